import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Latency buckets in seconds, from a fast database call to a slow HSM under retry. */
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** The two views of /metrics: anonymous (no label names an object) or detailed (KMS_METRICS_TOKEN). */
export type MetricsView = 'anonymous' | 'detailed';

/** How long one rendered exposition answers scrapes of its view. */
const RENDER_REUSE_MS = 1000;

/** One series of a gauge: label values and a number. */
export type GaugeReading = Array<{ labels: Record<string, string>; value: number }>;

/**
 * This process's Prometheus metrics (prom-client), on registries of its own so several apps in one
 * process (tests) never share counters. Counters and histograms are updated where things happen;
 * gauges of database state are set by a background refresh (src/ops/state-metrics.ts), never read
 * at scrape time.
 *
 * Two views. The anonymous one (any caller of the ops port) carries no label that names an object:
 * commands, job kinds, operations, outcomes, error codes and states only. The detailed one (a
 * scrape with `Authorization: Bearer <KMS_METRICS_TOKEN>`) adds the HSM profile name to the backend
 * series and the KMS key uuid to the DEK gauges. Label values never carry secrets or parameters.
 * A rendered view answers scrapes for a second, so a scrape costs the same however often it comes.
 */
export class Metrics {
  /** Series both views show. */
  readonly #shared = new Registry();
  /** Series of the anonymous view only (objects summed away). */
  readonly #anonymous = new Registry();
  /** Series of the detailed view only (per HSM profile, per KMS key). */
  readonly #detailed = new Registry();
  /** The registries a view renders, merged on first use (again after a processGauge is added). */
  #views: Record<MetricsView, Registry> | undefined;
  readonly #rendered = new Map<MetricsView, { body: Promise<string>; at: number }>();

  readonly apiRequests = new Counter({
    name: 'kms_api_requests_total', help: 'API requests answered, by command and CloudStack errorcode (0 = success)',
    labelNames: ['command', 'errorcode'] as const, registers: [this.#shared],
  });
  readonly apiDuration = new Histogram({
    name: 'kms_api_request_duration_seconds', help: 'Time to answer an API request, by command',
    labelNames: ['command'] as const, buckets: BUCKETS, registers: [this.#shared],
  });
  readonly apiInFlight = new Gauge({ name: 'kms_api_requests_in_flight', help: 'API requests received and not yet answered', registers: [this.#shared] });
  readonly jobs = new Counter({
    name: 'kms_jobs_total', help: 'Async jobs run by this process, by kind and final status (succeeded, failed, interrupted)',
    labelNames: ['kind', 'status'] as const, registers: [this.#shared],
  });
  readonly jobDuration = new Histogram({
    name: 'kms_job_duration_seconds', help: 'Run time of an async job, by kind',
    labelNames: ['kind'] as const, buckets: [...BUCKETS, 60, 300, 1800], registers: [this.#shared],
  });
  readonly loginThrottled = new Counter({
    name: 'kms_login_throttled_total', help: 'Login attempts refused unchecked because their user or client address must wait (login throttling)',
    registers: [this.#shared],
  });
  readonly jobQueueDepth = new Gauge({
    name: 'kms_job_queue_depth', help: 'Unfinished async jobs: waiting for a worker, or active under a live lease (refreshed in the background)',
    labelNames: ['state'] as const, registers: [this.#shared],
  });
  readonly stateRefreshed = new Gauge({
    name: 'kms_state_metrics_refreshed_timestamp_seconds', help: 'When the database gauges were last read (epoch seconds)', registers: [this.#shared],
  });

  readonly #backend = {
    anonymous: {
      operations: new Counter({
        name: 'kms_backend_operations_total', help: 'Key-backend operations, by operation and outcome (ok or the error kind)',
        labelNames: ['operation', 'outcome'] as const, registers: [this.#anonymous],
      }),
      duration: new Histogram({
        name: 'kms_backend_operation_duration_seconds', help: 'Time of one key-backend operation, retries included',
        labelNames: ['operation'] as const, buckets: BUCKETS, registers: [this.#anonymous],
      }),
      retries: new Counter({
        name: 'kms_backend_retries_total', help: 'Retries of transient key-backend failures', labelNames: ['operation'] as const, registers: [this.#anonymous],
      }),
    },
    detailed: {
      operations: new Counter({
        name: 'kms_backend_operations_total', help: 'Key-backend operations, by HSM profile, operation and outcome (ok or the error kind)',
        labelNames: ['profile', 'operation', 'outcome'] as const, registers: [this.#detailed],
      }),
      duration: new Histogram({
        name: 'kms_backend_operation_duration_seconds', help: 'Time of one key-backend operation, retries included',
        labelNames: ['profile', 'operation'] as const, buckets: BUCKETS, registers: [this.#detailed],
      }),
      retries: new Counter({
        name: 'kms_backend_retries_total', help: 'Retries of transient key-backend failures',
        labelNames: ['profile', 'operation'] as const, registers: [this.#detailed],
      }),
    },
  };

  readonly #wrapped = {
    anonymous: new Gauge({
      name: 'kms_wrapped_keys', help: 'Wrapped DEKs, per state of the KEK version that wraps them (refreshed in the background)',
      labelNames: ['kek_state'] as const, registers: [this.#anonymous],
    }),
    detailed: new Gauge({
      name: 'kms_wrapped_keys', help: 'Wrapped DEKs, per KMS key and state of the KEK version that wraps them (refreshed in the background)',
      labelNames: ['kms_key', 'kek_state'] as const, registers: [this.#detailed],
    }),
  };
  readonly #toRewrap = {
    anonymous: new Gauge({
      name: 'kms_deks_to_rewrap', help: 'Wrapped DEKs not yet under their KMS key\'s Active KEK version (refreshed in the background)', registers: [this.#anonymous],
    }),
    detailed: new Gauge({
      name: 'kms_deks_to_rewrap', help: 'Wrapped DEKs not yet under their KMS key\'s Active KEK version, per KMS key (refreshed in the background)',
      labelNames: ['kms_key'] as const, registers: [this.#detailed],
    }),
  };

  constructor() {
    collectDefaultMetrics({ register: this.#shared });
  }

  /** One key-backend call ended. */
  backendOperation(l: { profile: string; operation: string; outcome: string }, seconds: number): void {
    this.#backend.anonymous.operations.inc({ operation: l.operation, outcome: l.outcome });
    this.#backend.anonymous.duration.observe({ operation: l.operation }, seconds);
    this.#backend.detailed.operations.inc(l);
    this.#backend.detailed.duration.observe({ profile: l.profile, operation: l.operation }, seconds);
  }

  /** A transient key-backend failure is retried. */
  backendRetry(l: { profile: string; operation: string }): void {
    this.#backend.anonymous.retries.inc({ operation: l.operation });
    this.#backend.detailed.retries.inc(l);
  }

  /** Sets the DEK gauges from the per-version counts: `awaitsRewrap` tells the states still to rewrap. */
  setWrappedKeys(rows: ReadonlyArray<{ kmsKeyUuid: string; kekState: string; count: number }>, awaitsRewrap: (state: string) => boolean): void {
    const byState = new Map<string, number>();
    const byKey = new Map<string, number>();
    let toRewrap = 0;
    this.#wrapped.detailed.reset();
    for (const r of rows) {
      this.#wrapped.detailed.set({ kms_key: r.kmsKeyUuid, kek_state: r.kekState }, r.count);
      byState.set(r.kekState, (byState.get(r.kekState) ?? 0) + r.count);
      const pending = awaitsRewrap(r.kekState) ? r.count : 0;
      byKey.set(r.kmsKeyUuid, (byKey.get(r.kmsKeyUuid) ?? 0) + pending);
      toRewrap += pending;
    }
    this.#wrapped.anonymous.reset();
    for (const [state, n] of byState) this.#wrapped.anonymous.set({ kek_state: state }, n);
    this.#toRewrap.detailed.reset();
    for (const [key, n] of byKey) this.#toRewrap.detailed.set({ kms_key: key }, n);
    this.#toRewrap.anonymous.set(toRewrap);
  }

  /**
   * A gauge of in-process state read when a view is rendered (cheap reads only: never the
   * database). `anonymous` gives the series of the anonymous view, `detailed` those of the other.
   */
  processGauge(name: string, help: string, labels: { anonymous: readonly string[]; detailed: readonly string[] }, read: { anonymous: () => GaugeReading; detailed: () => GaugeReading }): void {
    for (const view of ['anonymous', 'detailed'] as const) {
      const reader = read[view];
      new Gauge({
        name, help, labelNames: labels[view], registers: [view === 'anonymous' ? this.#anonymous : this.#detailed],
        collect() {
          this.reset();
          for (const { labels: l, value } of reader()) this.set(l, value);
        },
      });
    }
    this.#views = undefined;
  }

  get contentType(): string {
    return this.#shared.contentType;
  }

  /** The text exposition of a view: rendered at most once a second, however many scrapes ask. */
  async scrape(view: MetricsView = 'anonymous'): Promise<{ contentType: string; body: string }> {
    const now = Date.now();
    let hit = this.#rendered.get(view);
    if (!hit || now - hit.at >= RENDER_REUSE_MS) {
      this.#views ??= {
        anonymous: Registry.merge([this.#shared, this.#anonymous]),
        detailed: Registry.merge([this.#shared, this.#detailed]),
      };
      hit = { body: this.#views[view].metrics(), at: now };
      this.#rendered.set(view, hit);
      hit.body.catch(() => this.#rendered.delete(view));
    }
    return { contentType: this.contentType, body: await hit.body };
  }
}
