/** What a handler answers; the envelope turns it into CloudStack's JSON or XML. */
export type ApiResult =
  | { kind: 'object'; name: string; value: object }
  | { kind: 'list'; name: string; items: object[]; count: number }
  | { kind: 'success'; displaytext?: string }
  /** Fields directly under the wrapper: login, logout, async job submissions and results. */
  | { kind: 'flat'; value: object };
