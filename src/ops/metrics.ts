import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Latency buckets in seconds, from a fast database call to a slow HSM under retry. */
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** What a scrape-time gauge reads: label values and a number, per series. */
export type GaugeReading = Array<{ labels: Record<string, string>; value: number }>;

/**
 * This process's Prometheus metrics (prom-client), on a registry of its own so several apps in one
 * process (tests) never share counters. Counters and histograms are updated where things happen;
 * gauges of state (queue, sessions, DEKs) are read at scrape time through `gauge()`.
 * Label values never carry secrets or request parameters: commands, job kinds, profile names,
 * operation names, outcomes and error codes only.
 */
export class Metrics {
  readonly registry = new Registry();

  readonly apiRequests = new Counter({
    name: 'kms_api_requests_total', help: 'API requests answered, by command and CloudStack errorcode (0 = success)',
    labelNames: ['command', 'errorcode'] as const, registers: [this.registry],
  });
  readonly apiDuration = new Histogram({
    name: 'kms_api_request_duration_seconds', help: 'Time to answer an API request, by command',
    labelNames: ['command'] as const, buckets: BUCKETS, registers: [this.registry],
  });
  readonly apiInFlight = new Gauge({ name: 'kms_api_requests_in_flight', help: 'API requests received and not yet answered', registers: [this.registry] });
  readonly jobs = new Counter({
    name: 'kms_jobs_total', help: 'Async jobs run by this process, by kind and final status (succeeded, failed, interrupted)',
    labelNames: ['kind', 'status'] as const, registers: [this.registry],
  });
  readonly jobDuration = new Histogram({
    name: 'kms_job_duration_seconds', help: 'Run time of an async job, by kind',
    labelNames: ['kind'] as const, buckets: [...BUCKETS, 60, 300, 1800], registers: [this.registry],
  });
  readonly backendOperations = new Counter({
    name: 'kms_backend_operations_total', help: 'Key-backend operations, by HSM profile, operation and outcome (ok or the error kind)',
    labelNames: ['profile', 'operation', 'outcome'] as const, registers: [this.registry],
  });
  readonly backendDuration = new Histogram({
    name: 'kms_backend_operation_duration_seconds', help: 'Time of one key-backend operation, retries included',
    labelNames: ['profile', 'operation'] as const, buckets: BUCKETS, registers: [this.registry],
  });
  readonly backendRetries = new Counter({
    name: 'kms_backend_retries_total', help: 'Retries of transient key-backend failures',
    labelNames: ['profile', 'operation'] as const, registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /** A gauge whose series are read at each scrape; a failing read leaves the gauge empty for that scrape. */
  gauge<L extends string>(name: string, help: string, labelNames: readonly L[], read: () => Promise<GaugeReading>): void {
    new Gauge({
      name, help, labelNames, registers: [this.registry],
      async collect() {
        this.reset();
        for (const { labels, value } of await read().catch(() => [])) this.set(labels as Partial<Record<L, string>>, value);
      },
    });
  }

  /** The text exposition format. */
  async scrape(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
