

/** Which rows of a list one page holds (CloudStack page/pagesize, resolved). */
export interface PageWindow {
  readonly offset: number;
  /** undefined: every row (pagesize=-1). */
  readonly limit: number | undefined;
}

/** One page of a list and the total count of the list (CloudStack `count`). */
export interface Page<T> {
  readonly rows: T[];
  readonly count: number;
}
