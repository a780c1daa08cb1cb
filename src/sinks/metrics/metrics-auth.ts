import { createHash } from 'node:crypto';

/** A user as the API server's TokenReview names it. */
export interface ReviewedUser {
  readonly username: string;
  readonly uid?: string;
  readonly groups?: readonly string[];
  readonly extra?: Readonly<Record<string, readonly string[]>>;
}

/** What the authorizer needs from the Kubernetes API: the two review calls. */
export interface ReviewApi {
  /** The user the token belongs to, or undefined when the API server does not accept it. */
  reviewToken(token: string): Promise<ReviewedUser | undefined>;
  /** Whether `user` may `verb` the non-resource URL `path`. */
  mayAccess(user: ReviewedUser, path: string, verb: string): Promise<boolean>;
}

export type AuthDecision =
  | { readonly status: 200; readonly user: string }
  /** No token, or one the API server does not authenticate. */
  | { readonly status: 401; readonly reason: string }
  /** Authenticated but not allowed. */
  | { readonly status: 403; readonly user: string }
  /** The access review itself failed: nothing is known, so nothing is served. */
  | { readonly status: 500; readonly reason: string };

export interface MetricsAuthorizerOptions {
  readonly api: ReviewApi;
  readonly nowMs: () => number;
  /** The non-resource URL the user must be allowed to `get`. */
  readonly path?: string;
  /** kube-rbac-proxy's defaults: an allowed token is rechecked after 2 min, a denied one 30 s. */
  readonly allowedTtlMs?: number;
  readonly deniedTtlMs?: number;
  /** Tokens remembered at most; the oldest is forgotten first. */
  readonly maxEntries?: number;
}

interface CacheEntry {
  readonly decision: AuthDecision;
  readonly expiresMs: number;
}

/**
 * Decides whether an `Authorization` header may read /metrics, as kube-rbac-proxy does: a
 * TokenReview names the user, a SubjectAccessReview checks `get` on the non-resource URL.
 * Decisions are remembered per token for a short while so that each scrape does not cost two
 * API calls; the cache is keyed by a SHA-256 of the token, so a heap dump holds no token.
 * Failures of the API are never remembered and fail closed (401 when the token could not be
 * reviewed, 500 when the access could not be), like kube-rbac-proxy.
 */
export class MetricsAuthorizer {
  private readonly cache = new Map<string, CacheEntry>();
  // Concurrent scrapes with one token share one review.
  private readonly pending = new Map<string, Promise<Review>>();
  private readonly path: string;
  private readonly allowedTtlMs: number;
  private readonly deniedTtlMs: number;
  private readonly maxEntries: number;

  constructor(private readonly options: MetricsAuthorizerOptions) {
    this.path = options.path ?? '/metrics';
    this.allowedTtlMs = options.allowedTtlMs ?? 120_000;
    this.deniedTtlMs = options.deniedTtlMs ?? 30_000;
    this.maxEntries = options.maxEntries ?? 1024;
  }

  /** The decision for a request's `Authorization` header (undefined when absent). */
  async authorize(header: string | undefined): Promise<AuthDecision> {
    const token = bearerToken(header);
    if (token === undefined) return { status: 401, reason: 'no bearer token' };
    const key = createHash('sha256').update(token).digest('hex');
    const cached = this.cache.get(key);
    if (cached && cached.expiresMs > this.options.nowMs()) return cached.decision;
    if (cached) this.cache.delete(key);
    const running = this.pending.get(key);
    if (running) return (await running).decision;
    const review = this.review(token).finally(() => this.pending.delete(key));
    this.pending.set(key, review);
    const { decision, cacheable } = await review;
    if (cacheable) this.remember(key, decision);
    return decision;
  }

  /** Tokens currently remembered. */
  get size(): number {
    return this.cache.size;
  }

  private async review(token: string): Promise<Review> {
    let user: ReviewedUser | undefined;
    try {
      user = await this.options.api.reviewToken(token);
    } catch (error) {
      const reason = `TokenReview failed: ${messageOf(error)}`;
      return { decision: { status: 401, reason }, cacheable: false };
    }
    if (!user)
      return { decision: { status: 401, reason: 'token not authenticated' }, cacheable: true };
    try {
      const allowed = await this.options.api.mayAccess(user, this.path, 'get');
      const decision: AuthDecision = allowed
        ? { status: 200, user: user.username }
        : { status: 403, user: user.username };
      return { decision, cacheable: true };
    } catch (error) {
      const reason = `SubjectAccessReview failed: ${messageOf(error)}`;
      return { decision: { status: 500, reason }, cacheable: false };
    }
  }

  private remember(key: string, decision: AuthDecision): void {
    const ttl = decision.status === 200 ? this.allowedTtlMs : this.deniedTtlMs;
    this.cache.delete(key);
    while (this.cache.size >= this.maxEntries) {
      const oldest = this.cache.keys().next().value as string;
      this.cache.delete(oldest);
    }
    this.cache.set(key, { decision, expiresMs: this.options.nowMs() + ttl });
  }
}

/** A decision, and whether it is the API server's answer (cached) or a failed call (not). */
interface Review {
  readonly decision: AuthDecision;
  readonly cacheable: boolean;
}

/**
 * The token of an `Authorization: Bearer <token>` header, as the API server's own bearer
 * authenticator reads it: the scheme case-insensitive, one space-separated token of RFC 6750
 * token68 characters, nothing after it. Anything else is no token.
 */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const match = /^bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(header.trim());
  return match?.[1];
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
