import {
  ApiException,
  CoreV1Api,
  PatchStrategy,
  type CoreV1Event,
  type KubeConfig,
  setHeaderMiddleware,
  type ObservableMiddleware,
  type RequestContext,
} from '@kubernetes/client-node';

/** What the recorder needs from the API: create an Event, patch its count. */
export interface EventsApi {
  /** `signal` abandons the request, e.g. when the agent must stop now. */
  create(namespace: string, event: CoreV1Event, signal?: AbortSignal): Promise<void>;
  patch(
    namespace: string,
    name: string,
    patch: EventCountPatch,
    signal?: AbortSignal,
  ): Promise<void>;
}

/** The fields a repeated occurrence changes. Timestamps are RFC 3339 strings. */
export interface EventCountPatch {
  readonly count: number;
  readonly lastTimestamp: string;
  readonly message: string;
}

export interface CoreV1EventsApiOptions {
  /** Gives up on a request after this long, so a hung connection cannot stall the recorder. */
  readonly requestTimeoutMs?: number;
}

/**
 * EventsApi on client-node's CoreV1Api. client-node 1.x sends PATCH bodies as
 * `application/json-patch+json` unless told otherwise, which a real API server rejects for an
 * object body; the count patch is a strategic merge patch, as client-go sends for Events.
 * The per-call middleware also bounds each request with a timeout signal: client-node sets none,
 * and a hung connection would stall the recorder.
 */
export function coreV1EventsApi(
  kubeConfig: KubeConfig,
  options: CoreV1EventsApiOptions = {},
): EventsApi {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const timeoutMs = options.requestTimeoutMs ?? 10_000;
  const callOptions = (signal: AbortSignal | undefined, contentType?: string) => ({
    middleware: [requestMiddleware(timeoutMs, signal, contentType)],
    middlewareMergeStrategy: 'append' as const,
  });
  return {
    async create(namespace, body, signal) {
      await core.createNamespacedEvent({ namespace, body }, callOptions(signal));
    },
    async patch(namespace, name, body, signal) {
      await core.patchNamespacedEvent(
        { namespace, name, body },
        callOptions(signal, PatchStrategy.StrategicMergePatch),
      );
    },
  };
}

function requestMiddleware(
  timeoutMs: number,
  signal: AbortSignal | undefined,
  contentType?: string,
): ObservableMiddleware {
  // setHeaderMiddleware builds the observable the object-parameter API expects; the Accept
  // header it sets when no content type is given is the one the generated code sends anyway.
  const header = contentType
    ? setHeaderMiddleware('Content-Type', contentType)
    : setHeaderMiddleware('Accept', 'application/json, */*;q=0.8');
  return {
    pre: (context: RequestContext) => {
      const timeout = AbortSignal.timeout(timeoutMs);
      context.setSignal(signal ? AbortSignal.any([timeout, signal]) : timeout);
      return header.pre(context);
    },
    post: (response) => header.post(response),
  };
}

export type ApiFailure =
  | { readonly kind: 'not_found' }
  | { readonly kind: 'conflict' }
  | { readonly kind: 'retryable'; readonly status?: number; readonly retryAfterMs?: number }
  | { readonly kind: 'rejected'; readonly status: number };

/**
 * Sorts an API error into what the recorder does next: 404 (the Event expired: create anew),
 * 409 (the name exists: it is ours from an earlier attempt), 429/5xx/network/timeout (retry
 * with backoff), any other status (the request is wrong or forbidden: retrying cannot help).
 */
export function classifyApiError(error: unknown): ApiFailure {
  const status = statusOf(error);
  if (status === undefined) return { kind: 'retryable' };
  if (status === 404) return { kind: 'not_found' };
  if (status === 409) return { kind: 'conflict' };
  if (status === 429 || status >= 500)
    return { kind: 'retryable', status, retryAfterMs: retryAfterOf(error) };
  return { kind: 'rejected', status };
}

function statusOf(error: unknown): number | undefined {
  if (error instanceof ApiException) return error.code;
  if (typeof error === 'object' && error !== null) {
    const { statusCode } = error as { statusCode?: unknown };
    if (typeof statusCode === 'number') return statusCode;
  }
  return undefined;
}

function retryAfterOf(error: unknown): number | undefined {
  if (!(error instanceof ApiException)) return undefined;
  const headers = error.headers as Record<string, string | undefined>;
  const value = headers['retry-after'] ?? headers['Retry-After'];
  const seconds = value === undefined ? NaN : Number(value);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : undefined;
}
