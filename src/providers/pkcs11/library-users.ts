/**
 * Who in this process uses each PKCS#11 library: main-thread modules (module.ts, the master-key
 * seal) and library threads. C_Initialize is per process, so C_Finalize must wait for the last user
 * of a path, whichever thread it lives on.
 */
const users = new Map<string, number>();

export function enterLibrary(path: string): void {
  users.set(path, (users.get(path) ?? 0) + 1);
}

/** Drops one user; true when it was the last, which should then C_Finalize. */
export function leaveLibrary(path: string): boolean {
  const n = (users.get(path) ?? 1) - 1;
  if (n > 0) {
    users.set(path, n);
    return false;
  }
  users.delete(path);
  return true;
}
