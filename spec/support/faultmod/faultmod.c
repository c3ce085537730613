/*
 * A fault-injecting PKCS#11 module for tests. It exports C_GetFunctionList, loads the real module
 * named by KMS_FAULTMOD_TARGET (default: SoftHSM2) with dlopen, forwards every call to it, and
 * injects faults read from the control file named by KMS_FAULTMOD_CONTROL. The file is re-read
 * whenever its inode, size or mtime changes, so a test changes faults while the server runs
 * (write a temp file and rename it over the control file). One rule per line:
 *
 *   fail <C_Function|*> <CKR_NAME|0xHEX> [N]   the next N calls (default: all) return that code
 *                                              (`*`: every function but C_Finalize)
 *   delay <C_Function|*> <ms>                  each call sleeps ms first
 *   hang <C_Function|*>                        calls block until the rule leaves the file
 *   restart <id>                               a new id: every session and object handle becomes
 *                                              invalid until the caller C_Finalize's and
 *                                              C_Initialize's again (the real module is finalised)
 *
 * Counters of `fail` rules survive a reload when the same line is still present. The module writes
 * "<function> <rv>" for every injected fault, and "init"/"finalize", to <control>.log. It counts the
 * calls sleeping in a `delay` at once and writes the highest count since the rules last changed to
 * <control>.peak (one number): how many calls the module was given in parallel.
 * Only the subset of PKCS#11 v2.40 types needed here is declared; the function list layout is
 * v2.40's: a CK_VERSION followed by 68 function pointers in the standard's order.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

typedef unsigned long CK_ULONG;
typedef CK_ULONG CK_RV;
typedef struct { unsigned char major, minor; } CK_VERSION;
typedef struct {
  CK_VERSION version;
  void *fn[68];
} CK_FUNCTION_LIST;
typedef CK_RV (*GetFunctionList)(CK_FUNCTION_LIST **);

#define CKR_OK 0x0UL
#define CKR_GENERAL_ERROR 0x5UL
#define CKR_SESSION_HANDLE_INVALID 0xB3UL
#define CKR_DEVICE_REMOVED 0x32UL
#define CKR_CRYPTOKI_NOT_INITIALIZED 0x190UL

enum {
  F_Initialize, F_Finalize, F_GetInfo, F_GetFunctionList, F_GetSlotList, F_GetSlotInfo, F_GetTokenInfo,
  F_GetMechanismList, F_GetMechanismInfo, F_InitToken, F_InitPIN, F_SetPIN, F_OpenSession, F_CloseSession,
  F_CloseAllSessions, F_GetSessionInfo, F_GetOperationState, F_SetOperationState, F_Login, F_Logout,
  F_CreateObject, F_CopyObject, F_DestroyObject, F_GetObjectSize, F_GetAttributeValue, F_SetAttributeValue,
  F_FindObjectsInit, F_FindObjects, F_FindObjectsFinal, F_EncryptInit, F_Encrypt, F_EncryptUpdate,
  F_EncryptFinal, F_DecryptInit, F_Decrypt, F_DecryptUpdate, F_DecryptFinal, F_DigestInit, F_Digest,
  F_DigestUpdate, F_DigestKey, F_DigestFinal, F_SignInit, F_Sign, F_SignUpdate, F_SignFinal,
  F_SignRecoverInit, F_SignRecover, F_VerifyInit, F_Verify, F_VerifyUpdate, F_VerifyFinal,
  F_VerifyRecoverInit, F_VerifyRecover, F_DigestEncryptUpdate, F_DecryptDigestUpdate, F_SignEncryptUpdate,
  F_DecryptVerifyUpdate, F_GenerateKey, F_GenerateKeyPair, F_WrapKey, F_UnwrapKey, F_DeriveKey,
  F_SeedRandom, F_GenerateRandom, F_GetFunctionStatus, F_CancelFunction, F_WaitForSlotEvent, F_COUNT
};

static const char *const NAMES[F_COUNT] = {
  "C_Initialize", "C_Finalize", "C_GetInfo", "C_GetFunctionList", "C_GetSlotList", "C_GetSlotInfo",
  "C_GetTokenInfo", "C_GetMechanismList", "C_GetMechanismInfo", "C_InitToken", "C_InitPIN", "C_SetPIN",
  "C_OpenSession", "C_CloseSession", "C_CloseAllSessions", "C_GetSessionInfo", "C_GetOperationState",
  "C_SetOperationState", "C_Login", "C_Logout", "C_CreateObject", "C_CopyObject", "C_DestroyObject",
  "C_GetObjectSize", "C_GetAttributeValue", "C_SetAttributeValue", "C_FindObjectsInit", "C_FindObjects",
  "C_FindObjectsFinal", "C_EncryptInit", "C_Encrypt", "C_EncryptUpdate", "C_EncryptFinal", "C_DecryptInit",
  "C_Decrypt", "C_DecryptUpdate", "C_DecryptFinal", "C_DigestInit", "C_Digest", "C_DigestUpdate",
  "C_DigestKey", "C_DigestFinal", "C_SignInit", "C_Sign", "C_SignUpdate", "C_SignFinal", "C_SignRecoverInit",
  "C_SignRecover", "C_VerifyInit", "C_Verify", "C_VerifyUpdate", "C_VerifyFinal", "C_VerifyRecoverInit",
  "C_VerifyRecover", "C_DigestEncryptUpdate", "C_DecryptDigestUpdate", "C_SignEncryptUpdate",
  "C_DecryptVerifyUpdate", "C_GenerateKey", "C_GenerateKeyPair", "C_WrapKey", "C_UnwrapKey", "C_DeriveKey",
  "C_SeedRandom", "C_GenerateRandom", "C_GetFunctionStatus", "C_CancelFunction", "C_WaitForSlotEvent",
};

static const struct { const char *name; CK_RV rv; } CODES[] = {
  {"CKR_GENERAL_ERROR", 0x5}, {"CKR_DEVICE_ERROR", 0x30}, {"CKR_DEVICE_MEMORY", 0x31},
  {"CKR_DEVICE_REMOVED", 0x32}, {"CKR_SESSION_HANDLE_INVALID", 0xB3}, {"CKR_SESSION_CLOSED", 0xB0},
  {"CKR_TOKEN_NOT_PRESENT", 0xE0}, {"CKR_USER_NOT_LOGGED_IN", 0x101}, {"CKR_PIN_INCORRECT", 0xA0},
  {"CKR_KEY_HANDLE_INVALID", 0x60}, {"CKR_OBJECT_HANDLE_INVALID", 0x82},
  {"CKR_CRYPTOKI_NOT_INITIALIZED", 0x190},
};

enum kind { FAIL, DELAY, HANG };
struct rule {
  enum kind kind;
  int fn; /* -1: every function */
  CK_RV rv;
  long remaining; /* FAIL: calls left, -1 for all */
  long ms;
  char line[160];
};

#define MAX_RULES 32
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct rule rules[MAX_RULES];
static int nrules;
static struct stat seen;
static char restart_id[64];
static int restarted; /* handles invalid until the next C_Initialize */
static int delayed_now; /* calls sleeping in a delay right now */
static int delayed_peak; /* the most at once since the rules last changed */
static CK_FUNCTION_LIST *real;
static CK_FUNCTION_LIST mine;

static const char *control_path(void) { return getenv("KMS_FAULTMOD_CONTROL"); }

static void note(const char *what, CK_RV rv) {
  const char *ctl = control_path();
  if (!ctl) return;
  char path[4096];
  snprintf(path, sizeof path, "%s.log", ctl);
  FILE *f = fopen(path, "a");
  if (!f) return;
  fprintf(f, "%s 0x%lx\n", what, rv);
  fclose(f);
}

/* Records the peak of delayed calls in flight. Caller holds `lock`. */
static void write_peak(void) {
  const char *ctl = control_path();
  if (!ctl) return;
  char path[4096], tmp[4200];
  snprintf(path, sizeof path, "%s.peak", ctl);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = fopen(tmp, "w");
  if (!f) return;
  fprintf(f, "%d\n", delayed_peak);
  fclose(f);
  rename(tmp, path);
}

static int fn_index(const char *name) {
  if (strcmp(name, "*") == 0) return -1;
  for (int i = 0; i < F_COUNT; i++) if (strcmp(NAMES[i], name) == 0) return i;
  return -2;
}

static int parse_rv(const char *s, CK_RV *rv) {
  for (size_t i = 0; i < sizeof CODES / sizeof CODES[0]; i++) {
    if (strcmp(CODES[i].name, s) == 0) { *rv = CODES[i].rv; return 0; }
  }
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 0);
  if (errno || *end) return -1;
  *rv = v;
  return 0;
}

/* Re-reads the control file when it changed. Caller holds `lock`. */
static void reload(void) {
  const char *ctl = control_path();
  struct stat st;
  if (!ctl || stat(ctl, &st) != 0) {
    nrules = 0;
    memset(&seen, 0, sizeof seen);
    return;
  }
  if (st.st_ino == seen.st_ino && st.st_size == seen.st_size && st.st_mtim.tv_sec == seen.st_mtim.tv_sec &&
      st.st_mtim.tv_nsec == seen.st_mtim.tv_nsec) return;
  FILE *f = fopen(ctl, "r");
  if (!f) return;
  seen = st;
  struct rule next[MAX_RULES];
  int n = 0;
  char line[160];
  while (n < MAX_RULES && fgets(line, sizeof line, f)) {
    line[strcspn(line, "\r\n")] = 0;
    char verb[16] = {0}, fn[48] = {0}, arg[48] = {0};
    long count = -1;
    int got = sscanf(line, "%15s %47s %47s %ld", verb, fn, arg, &count);
    if (got < 2) continue;
    if (strcmp(verb, "restart") == 0) {
      if (strcmp(fn, restart_id) != 0) {
        snprintf(restart_id, sizeof restart_id, "%s", fn);
        restarted = 1;
        note("restart", 0);
      }
      continue;
    }
    struct rule r = { .fn = fn_index(fn), .remaining = -1 };
    if (r.fn == -2) continue;
    snprintf(r.line, sizeof r.line, "%s", line);
    if (strcmp(verb, "fail") == 0 && got >= 3 && parse_rv(arg, &r.rv) == 0) {
      r.kind = FAIL;
      r.remaining = got == 4 ? count : -1;
      for (int i = 0; i < nrules; i++) {
        if (rules[i].kind == FAIL && strcmp(rules[i].line, r.line) == 0) r.remaining = rules[i].remaining;
      }
    } else if (strcmp(verb, "delay") == 0 && got >= 3) {
      r.kind = DELAY;
      r.ms = atol(arg);
    } else if (strcmp(verb, "hang") == 0) {
      r.kind = HANG;
    } else {
      continue;
    }
    next[n++] = r;
  }
  fclose(f);
  memcpy(rules, next, sizeof(struct rule) * (size_t)n);
  nrules = n;
  delayed_peak = delayed_now;
  write_peak();
}

static void sleep_ms(long ms) {
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static int hanging(int fn) {
  pthread_mutex_lock(&lock);
  reload();
  int h = 0;
  for (int i = 0; i < nrules; i++) if (rules[i].kind == HANG && (rules[i].fn == fn || rules[i].fn == -1)) h = 1;
  pthread_mutex_unlock(&lock);
  return h;
}

/* Delays, hangs and the fault to inject for one call of `fn`; CKR_OK means "forward it". */
static CK_RV before(int fn, int uses_session) {
  long delay = 0;
  CK_RV rv = CKR_OK;
  pthread_mutex_lock(&lock);
  reload();
  if (restarted && fn != F_Initialize && fn != F_Finalize && fn != F_GetFunctionList && fn != F_GetInfo) {
    rv = uses_session ? CKR_SESSION_HANDLE_INVALID : CKR_DEVICE_REMOVED;
  }
  for (int i = 0; i < nrules && rv == CKR_OK; i++) {
    struct rule *r = &rules[i];
    /* `*` spares C_Finalize: finalising works locally even when the device is gone. */
    if (r->fn != fn && (r->fn != -1 || fn == F_Finalize)) continue;
    if (r->kind == DELAY) delay += r->ms;
    if (r->kind == FAIL && r->remaining != 0) {
      if (r->remaining > 0) r->remaining--;
      rv = r->rv;
    }
  }
  if (delay && ++delayed_now > delayed_peak) {
    delayed_peak = delayed_now;
    write_peak();
  }
  pthread_mutex_unlock(&lock);
  if (delay) {
    sleep_ms(delay);
    pthread_mutex_lock(&lock);
    delayed_now--;
    pthread_mutex_unlock(&lock);
  }
  if (hanging(fn)) {
    note(NAMES[fn], 0x7fffffffUL);
    while (hanging(fn)) sleep_ms(10);
  }
  if (rv != CKR_OK) note(NAMES[fn], rv);
  return rv;
}

#define REAL(idx, type) ((type)real->fn[idx])

/* A wrapper per function: PARAMS is the typed list, ARGS the names; S is 1 when the first is a session. */
#define WRAP(idx, S, PARAMS, ARGS)                         \
  static CK_RV w_##idx PARAMS {                            \
    if (!real) return CKR_CRYPTOKI_NOT_INITIALIZED;        \
    CK_RV rv = before(idx, S);                             \
    if (rv != CKR_OK) return rv;                           \
    return REAL(idx, CK_RV(*) PARAMS) ARGS;                \
  }

typedef void *P;
typedef CK_ULONG U;
WRAP(F_GetInfo, 0, (P a), (a))
WRAP(F_GetSlotList, 0, (unsigned char a, P b, P c), (a, b, c))
WRAP(F_GetSlotInfo, 0, (U a, P b), (a, b))
WRAP(F_GetTokenInfo, 0, (U a, P b), (a, b))
WRAP(F_GetMechanismList, 0, (U a, P b, P c), (a, b, c))
WRAP(F_GetMechanismInfo, 0, (U a, U b, P c), (a, b, c))
WRAP(F_InitToken, 0, (U a, P b, U c, P d), (a, b, c, d))
WRAP(F_InitPIN, 1, (U a, P b, U c), (a, b, c))
WRAP(F_SetPIN, 1, (U a, P b, U c, P d, U e), (a, b, c, d, e))
WRAP(F_OpenSession, 0, (U a, U b, P c, P d, P e), (a, b, c, d, e))
WRAP(F_CloseSession, 1, (U a), (a))
WRAP(F_CloseAllSessions, 0, (U a), (a))
WRAP(F_GetSessionInfo, 1, (U a, P b), (a, b))
WRAP(F_GetOperationState, 1, (U a, P b, P c), (a, b, c))
WRAP(F_SetOperationState, 1, (U a, P b, U c, U d, U e), (a, b, c, d, e))
WRAP(F_Login, 1, (U a, U b, P c, U d), (a, b, c, d))
WRAP(F_Logout, 1, (U a), (a))
WRAP(F_CreateObject, 1, (U a, P b, U c, P d), (a, b, c, d))
WRAP(F_CopyObject, 1, (U a, U b, P c, U d, P e), (a, b, c, d, e))
WRAP(F_DestroyObject, 1, (U a, U b), (a, b))
WRAP(F_GetObjectSize, 1, (U a, U b, P c), (a, b, c))
WRAP(F_GetAttributeValue, 1, (U a, U b, P c, U d), (a, b, c, d))
WRAP(F_SetAttributeValue, 1, (U a, U b, P c, U d), (a, b, c, d))
WRAP(F_FindObjectsInit, 1, (U a, P b, U c), (a, b, c))
WRAP(F_FindObjects, 1, (U a, P b, U c, P d), (a, b, c, d))
WRAP(F_FindObjectsFinal, 1, (U a), (a))
WRAP(F_EncryptInit, 1, (U a, P b, U c), (a, b, c))
WRAP(F_Encrypt, 1, (U a, P b, U c, P d, P e), (a, b, c, d, e))
WRAP(F_EncryptUpdate, 1, (U a, P b, U c, P d, P e), (a, b, c, d, e))
WRAP(F_EncryptFinal, 1, (U a, P b, P c), (a, b, c))
WRAP(F_DecryptInit, 1, (U a, P b, U c), (a, b, c))
WRAP(F_Decrypt, 1, (U a, P b, U c, P d, P e), (a, b, c, d, e))
WRAP(F_DecryptUpdate, 1, (U a, P b, U c, P d, P e), (a, b, c, d, e))
WRAP(F_DecryptFinal, 1, (U a, P b, P c), (a, b, c))
WRAP(F_DigestInit, 1, (U a, P b), (a, b))
WRAP(F_Digest, 1, (U a, P b, U c, P d, P e), (a, b, c, d, e))
WRAP(F_DigestUpdate, 1, (U a, P b, U c), (a, b, c))
WRAP(F_DigestKey, 1, (U a, U b), (a, b))
WRAP(F_DigestFinal, 1, (U a, P b, P c), (a, b, c))
WRAP(F_SignInit, 1, (U a, P b, U c), (a, b, c))
WRAP(F_Sign, 1, (U a, P b, U c, P d, P e), (a, b, c, d, e))
WRAP(F_SignUpdate, 1, (U a, P b, U c), (a, b, c))
WRAP(F_SignFinal, 1, (U a, P b, P c), (a, b, c))
WRAP(F_SignRecoverInit, 1, (U a, P b, U c), (a, b, c))
WRAP(F_SignRecover, 1, (U a, P b, U c, P d, P e), (a, b, c, d, e))
WRAP(F_VerifyInit, 1, (U a, P b, U c), (a, b, c))
WRAP(F_Verify, 1, (U a, P b, U c, P d, U e), (a, b, c, d, e))
WRAP(F_VerifyUpdate, 1, (U a, P b, U c), (a, b, c))
WRAP(F_VerifyFinal, 1, (U a, P b, U c), (a, b, c))
WRAP(F_VerifyRecoverInit, 1, (U a, P b, U c), (a, b, c))
WRAP(F_VerifyRecover, 1, (U a, P b, U c, P d, P e), (a, b, c, d, e))
WRAP(F_DigestEncryptUpdate, 1, (U a, P b, U c, P d, P e), (a, b, c, d, e))
WRAP(F_DecryptDigestUpdate, 1, (U a, P b, U c, P d, P e), (a, b, c, d, e))
WRAP(F_SignEncryptUpdate, 1, (U a, P b, U c, P d, P e), (a, b, c, d, e))
WRAP(F_DecryptVerifyUpdate, 1, (U a, P b, U c, P d, P e), (a, b, c, d, e))
WRAP(F_GenerateKey, 1, (U a, P b, P c, U d, P e), (a, b, c, d, e))
WRAP(F_GenerateKeyPair, 1, (U a, P b, P c, U d, P e, U f, P g, P h), (a, b, c, d, e, f, g, h))
WRAP(F_WrapKey, 1, (U a, P b, U c, U d, P e, P f), (a, b, c, d, e, f))
WRAP(F_UnwrapKey, 1, (U a, P b, U c, P d, U e, P f, U g, P h), (a, b, c, d, e, f, g, h))
WRAP(F_DeriveKey, 1, (U a, P b, U c, P d, U e, P f), (a, b, c, d, e, f))
WRAP(F_SeedRandom, 1, (U a, P b, U c), (a, b, c))
WRAP(F_GenerateRandom, 1, (U a, P b, U c), (a, b, c))
WRAP(F_GetFunctionStatus, 1, (U a), (a))
WRAP(F_CancelFunction, 1, (U a), (a))
WRAP(F_WaitForSlotEvent, 0, (U a, P b, P c), (a, b, c))

static CK_RV w_Initialize(P args) {
  if (!real) return CKR_GENERAL_ERROR;
  CK_RV rv = before(F_Initialize, 0);
  if (rv != CKR_OK) return rv;
  rv = REAL(F_Initialize, CK_RV (*)(P))(args);
  if (rv == CKR_OK) {
    pthread_mutex_lock(&lock);
    restarted = 0;
    pthread_mutex_unlock(&lock);
    note("init", rv);
  }
  return rv;
}

static CK_RV w_Finalize(P reserved) {
  if (!real) return CKR_GENERAL_ERROR;
  CK_RV rv = before(F_Finalize, 0);
  if (rv != CKR_OK) return rv;
  rv = REAL(F_Finalize, CK_RV (*)(P))(reserved);
  note("finalize", rv);
  return rv;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST **out);

static CK_RV w_GetFunctionList(CK_FUNCTION_LIST **out) { return C_GetFunctionList(out); }

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load_real(void) {
  const char *target = getenv("KMS_FAULTMOD_TARGET");
  if (!target) target = "/usr/lib/softhsm/libsofthsm2.so";
  void *h = dlopen(target, RTLD_NOW | RTLD_LOCAL);
  if (!h) return;
  GetFunctionList get = (GetFunctionList)dlsym(h, "C_GetFunctionList");
  if (!get || get(&real) != CKR_OK) {
    real = NULL;
    return;
  }
  mine.version = real->version;
  void *w[F_COUNT] = {
    w_Initialize, w_Finalize, w_F_GetInfo, w_GetFunctionList, w_F_GetSlotList, w_F_GetSlotInfo, w_F_GetTokenInfo,
    w_F_GetMechanismList, w_F_GetMechanismInfo, w_F_InitToken, w_F_InitPIN, w_F_SetPIN, w_F_OpenSession,
    w_F_CloseSession, w_F_CloseAllSessions, w_F_GetSessionInfo, w_F_GetOperationState, w_F_SetOperationState,
    w_F_Login, w_F_Logout, w_F_CreateObject, w_F_CopyObject, w_F_DestroyObject, w_F_GetObjectSize,
    w_F_GetAttributeValue, w_F_SetAttributeValue, w_F_FindObjectsInit, w_F_FindObjects, w_F_FindObjectsFinal,
    w_F_EncryptInit, w_F_Encrypt, w_F_EncryptUpdate, w_F_EncryptFinal, w_F_DecryptInit, w_F_Decrypt,
    w_F_DecryptUpdate, w_F_DecryptFinal, w_F_DigestInit, w_F_Digest, w_F_DigestUpdate, w_F_DigestKey,
    w_F_DigestFinal, w_F_SignInit, w_F_Sign, w_F_SignUpdate, w_F_SignFinal, w_F_SignRecoverInit, w_F_SignRecover,
    w_F_VerifyInit, w_F_Verify, w_F_VerifyUpdate, w_F_VerifyFinal, w_F_VerifyRecoverInit, w_F_VerifyRecover,
    w_F_DigestEncryptUpdate, w_F_DecryptDigestUpdate, w_F_SignEncryptUpdate, w_F_DecryptVerifyUpdate,
    w_F_GenerateKey, w_F_GenerateKeyPair, w_F_WrapKey, w_F_UnwrapKey, w_F_DeriveKey, w_F_SeedRandom,
    w_F_GenerateRandom, w_F_GetFunctionStatus, w_F_CancelFunction, w_F_WaitForSlotEvent,
  };
  memcpy(mine.fn, w, sizeof w);
}

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST **out) {
  pthread_once(&once, load_real);
  if (!real) return CKR_GENERAL_ERROR;
  if (!out) return 0x7UL; /* CKR_ARGUMENTS_BAD */
  *out = &mine;
  return CKR_OK;
}
