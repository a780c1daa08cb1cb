import type { KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';

/** One page request: `limit` items at most, after `continueToken` when given. */
export interface PageRequest {
  readonly limit: number;
  readonly continueToken?: string;
}

/** One list call of the API (the typed client's `list…({ limit, _continue })`). */
export type ListPageFn<T extends KubernetesObject> = (
  request: PageRequest,
) => Promise<KubernetesListObject<T>>;

export interface PagedListOptions<T extends KubernetesObject> {
  /** Items per page (the informer asks for 100; client-go's reflector for 500). */
  readonly pageSize: number;
  /** Applied to each item as its page arrives, so only the lean form outlives the page. */
  readonly transform: (object: T) => T;
  /** Items kept at most; the rest are counted through `onDropped` and not kept. */
  readonly maxObjects: number;
  readonly onDropped: (count: number) => void;
}

/**
 * Lists a whole collection page by page (`limit`/`continue`), keeping each item in its lean
 * form: the full objects of one page at most are alive at a time, instead of the whole
 * cluster's JSON, its parsed form and the stored copy at once. The pages form one consistent
 * snapshot; its resourceVersion (the last page's) is where the watch starts. An expired
 * continue token (410) fails the list: the informer then lists again from the first page.
 */
export async function listAllPages<T extends KubernetesObject>(
  listPage: ListPageFn<T>,
  options: PagedListOptions<T>,
): Promise<KubernetesListObject<T>> {
  const items: T[] = [];
  let dropped = 0;
  let continueToken: string | undefined;
  let resourceVersion = '';
  let first: KubernetesListObject<T> | undefined;
  do {
    const page = await listPage({
      limit: options.pageSize,
      ...(continueToken ? { continueToken } : {}),
    });
    first ??= page;
    for (const item of page.items ?? []) {
      if (items.length < options.maxObjects) items.push(options.transform(item));
      else dropped += 1;
    }
    resourceVersion = page.metadata?.resourceVersion ?? resourceVersion;
    continueToken = page.metadata?._continue || undefined;
  } while (continueToken);
  if (dropped > 0) options.onDropped(dropped);
  return {
    apiVersion: first.apiVersion,
    kind: first.kind,
    metadata: { resourceVersion },
    items,
  };
}
