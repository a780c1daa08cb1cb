/** The values of `--probe-mode`, and the modes an agent can run in. */
export type ProbeModeOption = 'auto' | 'tracepoint' | 'kprobe' | 'counters-only';
export type ActiveProbeMode = 'kprobe' | 'tracepoint' | 'counters-only';

export const probeModeOptions: readonly ProbeModeOption[] = [
  'auto',
  'tracepoint',
  'kprobe',
  'counters-only',
];
export const activeProbeModes: readonly ActiveProbeMode[] = [
  'kprobe',
  'tracepoint',
  'counters-only',
];

export function parseProbeModeOption(text: string): ProbeModeOption | undefined {
  return probeModeOptions.find((option) => option === text);
}
