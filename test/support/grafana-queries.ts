/** PromQL queries of a Grafana dashboard, as Grafana would send them to Prometheus. */

export interface DashboardQuery {
  /** Panel title, or `variable NAME` for a template variable. */
  readonly source: string;
  readonly expr: string;
}

interface PanelLike {
  title?: string;
  targets?: { expr?: string; hide?: boolean }[];
  panels?: PanelLike[];
}

interface VariableLike {
  name: string;
  type: string;
  query?: string | { query?: string };
}

interface DashboardLike {
  panels?: PanelLike[];
  templating?: { list?: VariableLike[] };
}

function panelQueries(panels: readonly PanelLike[]): DashboardQuery[] {
  return panels.flatMap((panel) => [
    ...(panel.targets ?? [])
      .filter((target) => typeof target.expr === 'string' && target.expr.trim() !== '')
      .map((target) => ({ source: panel.title ?? '(untitled)', expr: target.expr! })),
    ...panelQueries(panel.panels ?? []),
  ]);
}

const LABEL_VALUES = /^label_values\((.*),\s*\w+\)$/s;

/**
 * Every panel target's `expr` and every query variable's series selector (the `selector` of
 * `label_values(selector, label)`, which Grafana sends as a series match).
 */
export function dashboardQueries(dashboard: DashboardLike): DashboardQuery[] {
  const variables = (dashboard.templating?.list ?? [])
    .filter((variable) => variable.type === 'query')
    .map((variable) => {
      const query = typeof variable.query === 'string' ? variable.query : variable.query?.query;
      const selector = LABEL_VALUES.exec(query ?? '')?.[1] ?? query ?? '';
      return { source: `variable ${variable.name}`, expr: selector };
    });
  return [...panelQueries(dashboard.panels ?? []), ...variables];
}

/**
 * Replaces Grafana's variables the way Grafana does before it sends a query: `values` for the
 * dashboard's own variables (a regex, e.g. `.*` for "All"), and fixed windows for the
 * built-in interval and range variables.
 */
export function interpolateGrafanaVariables(
  expr: string,
  values: Readonly<Record<string, string>>,
  windows: { interval: string; range: string } = { interval: '1m', range: '1h' },
): string {
  const withBuiltins = expr
    .replaceAll('$__rate_interval', windows.interval)
    .replaceAll('$__interval', windows.interval)
    .replaceAll('$__range', windows.range);
  return withBuiltins.replace(/\$\{(\w+)\}|\$(\w+)/g, (whole, braced?: string, bare?: string) => {
    const name = braced ?? bare ?? '';
    const value = values[name];
    if (value === undefined) throw new Error(`no value for the dashboard variable ${whole}`);
    return value;
  });
}
