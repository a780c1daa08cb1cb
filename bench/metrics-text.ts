/** Sum of every sample of `name` in Prometheus text whose labels include all of `labels`. */
export function sumSamples(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const match = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!match || match[1] !== name) continue;
    const labelText = match[2] ?? '';
    const wanted = Object.entries(labels).every(([key, value]) =>
      labelText.includes(`${key}="${value}"`),
    );
    if (wanted) sum += Number(match[3]);
  }
  return sum;
}
