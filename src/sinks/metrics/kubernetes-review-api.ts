import {
  AuthenticationV1Api,
  AuthorizationV1Api,
  type KubeConfig,
  type ObservableMiddleware,
  type RequestContext,
  setHeaderMiddleware,
} from '@kubernetes/client-node';
import type { ReviewApi, ReviewedUser } from './metrics-auth.js';

export interface KubernetesReviewApiOptions {
  /**
   * Gives up on a review after this long: a scrape waits for it, and Prometheus's own scrape
   * timeout (10 s by default) should end with an answer, not a dropped connection.
   */
  readonly requestTimeoutMs?: number;
}

/**
 * ReviewApi on client-node: TokenReview (authentication.k8s.io/v1) and SubjectAccessReview
 * (authorization.k8s.io/v1), as the agent's own service account (which needs `create` on both).
 */
export function kubernetesReviewApi(
  kubeConfig: KubeConfig,
  options: KubernetesReviewApiOptions = {},
): ReviewApi {
  const authentication = kubeConfig.makeApiClient(AuthenticationV1Api);
  const authorization = kubeConfig.makeApiClient(AuthorizationV1Api);
  const timeoutMs = options.requestTimeoutMs ?? 5_000;
  const callOptions = () => ({
    middleware: [timeoutMiddleware(timeoutMs)],
    middlewareMergeStrategy: 'append' as const,
  });
  return {
    async reviewToken(token) {
      const review = await authentication.createTokenReview(
        {
          body: {
            apiVersion: 'authentication.k8s.io/v1',
            kind: 'TokenReview',
            // No audiences: the API server's own, those of a service account token.
            spec: { token },
          },
        },
        callOptions(),
      );
      const status = review.status;
      const username = status?.user?.username;
      if (status?.authenticated !== true || !username) return undefined;
      return {
        username,
        uid: status.user?.uid,
        groups: status.user?.groups,
        extra: status.user?.extra,
      };
    },
    async mayAccess(user: ReviewedUser, path, verb) {
      const review = await authorization.createSubjectAccessReview(
        {
          body: {
            apiVersion: 'authorization.k8s.io/v1',
            kind: 'SubjectAccessReview',
            spec: {
              user: user.username,
              uid: user.uid,
              groups: user.groups ? [...user.groups] : undefined,
              extra: user.extra
                ? Object.fromEntries(Object.entries(user.extra).map(([k, v]) => [k, [...v]]))
                : undefined,
              nonResourceAttributes: { path, verb },
            },
          },
        },
        callOptions(),
      );
      // `denied` wins over `allowed`; an authorizer may set neither (no opinion): not allowed.
      return review.status?.allowed === true && review.status.denied !== true;
    },
  };
}

function timeoutMiddleware(timeoutMs: number): ObservableMiddleware {
  // setHeaderMiddleware builds the observable the object-parameter API expects; the Accept
  // header it sets is the one the generated code sends anyway.
  const header = setHeaderMiddleware('Accept', 'application/json, */*;q=0.8');
  return {
    pre: (context: RequestContext) => {
      context.setSignal(AbortSignal.timeout(timeoutMs));
      return header.pre(context);
    },
    post: (response) => header.post(response),
  };
}
