import type { Logger } from 'pino';

import type { DecodedLine, LineDecoder } from '../../decode/decoded-line.js';
import type { ProbeEvent } from '../../events/types.js';
import { LogRateLimiter } from '../../shared/log-rate-limiter.js';
import { truncate } from './probe-stderr.js';
import { DECODER_EXCEPTION, type SupervisorMetrics } from './supervisor-metrics.js';

const REJECTED_LINE_LOG_CHARS = 200;

/** A printed count map, or the news that the probe cleared one. */
export type MapRecord = Extract<DecodedLine, { type: 'counts' } | { type: 'map_cleared' }>;

/** What a line decoded to, a decoder that threw included. */
type Decoded =
  | DecodedLine
  | { readonly type: 'rejected'; readonly code: typeof DECODER_EXCEPTION; readonly detail: string };

/** One probe's reading state: its decoder, its log rate limits, the run its maps belong to. */
export interface ProbeLineState {
  readonly probe: string;
  readonly decode: LineDecoder;
  /** Takes only what belongs to a process (lost_events, garbage): a combined process's own. */
  readonly processLevel: boolean;
  readonly rejectedLog: LogRateLimiter;
  readonly lostLog: LogRateLimiter;
  readonly sinkErrorLog: LogRateLimiter;
  readonly handlingErrorLog: LogRateLimiter;
  /** Events lost since the last lost-events message was logged. */
  lostSinceLog: number;
  /** Runs of bpftrace started for this probe. */
  runs: number;
}

export function newProbeLineState(
  probe: string,
  decode: LineDecoder,
  now: () => number,
  processLevel = false,
): ProbeLineState {
  return {
    probe,
    decode,
    processLevel,
    rejectedLog: new LogRateLimiter(10, 60_000, now),
    lostLog: new LogRateLimiter(10, 60_000, now),
    sinkErrorLog: new LogRateLimiter(10, 60_000, now),
    handlingErrorLog: new LogRateLimiter(10, 60_000, now),
    lostSinceLog: 0,
    runs: 0,
  };
}

export interface ProbeLinesOptions {
  readonly onEvent: (event: ProbeEvent, probe: string) => void;
  readonly onCounts?: (record: MapRecord, probe: string, run: number) => void;
  readonly metrics: SupervisorMetrics;
  readonly logger: Logger;
}

/**
 * One output line of bpftrace, once routed to its probe: decoded, counted, handed to the
 * sinks. Never throws: a sink's or the decoder's failure is counted and logged (rate-limited).
 */
export class ProbeLines {
  constructor(private readonly options: ProbeLinesOptions) {}

  /** Handles the line; returns the attached probe count when the line says the process attached. */
  handle(state: ProbeLineState, line: string): number | undefined {
    try {
      return this.dispatch(state, line);
    } catch (error) {
      this.handlingFailed(state, line, error);
      return undefined;
    }
  }

  private decode(state: ProbeLineState, line: string): Decoded {
    let decoded: DecodedLine;
    try {
      decoded = state.decode(line);
    } catch (error) {
      return { type: 'rejected', code: DECODER_EXCEPTION, detail: String(error) };
    }
    // A record or map no probe of a combined process claims has no probe to go to.
    if (
      state.processLevel &&
      (decoded.type === 'event' || decoded.type === 'counts' || decoded.type === 'map_cleared')
    ) {
      return {
        type: 'rejected',
        code: 'unknown_record',
        detail: 'no probe of the combined process prints this record or map',
      };
    }
    return decoded;
  }

  private dispatch(state: ProbeLineState, line: string): number | undefined {
    const { probe } = state;
    const { metrics, logger } = this.options;
    const decoded = this.decode(state, line);
    switch (decoded.type) {
      case 'counts':
      case 'map_cleared':
        metrics.maps.inc({ probe });
        try {
          this.options.onCounts?.(decoded, probe, state.runs);
        } catch (error) {
          const admitted = state.sinkErrorLog.admit();
          if (admitted !== undefined) {
            logger.error(
              { probe, err: error, suppressedBefore: admitted.suppressedBefore },
              'count map handling failed; its counts are missing',
            );
          }
        }
        return undefined;
      case 'event':
        metrics.decoded.inc({ probe });
        try {
          this.options.onEvent(decoded.event, probe);
        } catch (error) {
          // A sink failing on every event of a storm must not turn into a log line per event.
          const admitted = state.sinkErrorLog.admit();
          if (admitted !== undefined) {
            logger.error(
              { probe, err: error, suppressedBefore: admitted.suppressedBefore },
              'event sink failed; event dropped by the sink',
            );
          }
        }
        return undefined;
      case 'attached':
        return decoded.probes;
      case 'lost': {
        metrics.lost.inc({ probe }, decoded.count);
        // In a storm bpftrace reports a loss on nearly every poll: the metric has every one,
        // the log a few a minute with the total since the last message.
        state.lostSinceLog += decoded.count;
        const admitted = state.lostLog.admit();
        if (admitted !== undefined) {
          logger.warn(
            { probe, lost: state.lostSinceLog, reports: admitted.suppressedBefore + 1 },
            'probe lost events: perf ring buffer overflowed',
          );
          state.lostSinceLog = 0;
        }
        return undefined;
      }
      case 'ignored':
        return undefined;
      case 'rejected': {
        metrics.rejected.inc({ probe, error: decoded.code });
        const admitted = state.rejectedLog.admit();
        if (admitted !== undefined) {
          logger.warn(
            {
              probe,
              error: decoded.code,
              detail: decoded.detail,
              line: truncate(line, REJECTED_LINE_LOG_CHARS),
              suppressedBefore: admitted.suppressedBefore,
            },
            'probe line rejected',
          );
        }
        return undefined;
      }
    }
  }

  /** Counts and logs (rate-limited) a line whose handling threw after it was counted. */
  handlingFailed(state: ProbeLineState, line: string, error: unknown): void {
    const { probe } = state;
    // Not a rejection: every branch of dispatch counts the line before anything that could
    // throw, so the line is already counted by what it decoded to.
    this.options.metrics.handlingErrors.inc({ probe });
    const admitted = state.handlingErrorLog.admit();
    if (admitted === undefined) return;
    try {
      this.options.logger.error(
        {
          probe,
          err: error,
          line: truncate(line, REJECTED_LINE_LOG_CHARS),
          suppressedBefore: admitted.suppressedBefore,
        },
        'probe line handling failed; reading goes on',
      );
    } catch {
      // The logger itself may be what failed; the count above still tells.
    }
  }
}
