// ThreadSanitizer annotations for Debian's uninstrumented Abseil and gRPC.
//
// Why this exists: Debian builds libabsl_synchronization without
// -fsanitize=thread, so absl::Mutex's lock and unlock happen where TSan
// cannot see them, and every access to state guarded by an absl::Mutex from
// two threads is reported as a race. Hoist guards all of its shared state
// with absl::Mutex, so without this file a TSan run is noise.
//
// How: in HOIST_TSAN builds only, the linker is told `--wrap=SYMBOL` for each
// out-of-line Abseil synchronization entry point our code calls (see the
// top-level CMakeLists.txt). Calls from our objects then land in the
// __wrap_SYMBOL functions below, which tell TSan what the call does
// (acquire, release, or both) around the real call (__real_SYMBOL). Calls
// made from inside Abseil itself are not redirected and need not be: TSan
// only needs to see the edges our instrumented code depends on.
//
// gRPC: the same problem, one level up. A callback reactor's callbacks run
// on gRPC threads after gRPC's own (invisible) synchronization. The edges
// TSan needs are "an operation is started" -> "its completion callback
// runs" and "OnDone is scheduled" -> "OnDone runs". The start side is seen
// here (grpc_call_start_batch is interposed: libgrpc++ calls it through the
// PLT, so the executable's definition wins); the other annotations are
// one-line __tsan_acquire/__tsan_release calls that the TSan build adds to a
// copy of gRPC's callback headers (cmake/TsanGrpcHeaders.cmake).
//
// Contract: the symbol names are Debian 12's Abseil 20220623 ABI (inline
// namespace `debian3`). If the ABI changes, the link fails with an undefined
// __real_ symbol rather than silently losing the annotations.
//
// Not compiled into any non-TSan build.

#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>

namespace {

// Abseil's types are opaque here on purpose: the wrappers only forward
// pointers and by-value PODs, so the declarations below need not include
// Abseil headers (which would declare the C++ names we are replacing).
using Mutex = void;
using Condition = void;
using Notification = void;
using CondVar = void;
// absl::Duration is passed by value as {int64 rep_hi, uint32 rep_lo}; it is
// trivially copyable, so passing the same struct keeps the ABI.
struct Duration {
  int64_t rep_hi;
  uint32_t rep_lo;
};

// A wait on a condition releases the mutex and reacquires it before
// returning; another thread's release in between must be visible to us.
void AnnotateReleaseForWait(Mutex* mu) { __tsan_mutex_pre_unlock(mu, 0); }
void AnnotateReacquireAfterWait(Mutex* mu) {
  __tsan_mutex_post_unlock(mu, 0);
  __tsan_mutex_pre_lock(mu, 0);
  __tsan_mutex_post_lock(mu, 0, 0);
}

}  // namespace

#define HOIST_MUTEX_LOCK _ZN4absl7debian35Mutex4LockEv
#define HOIST_MUTEX_UNLOCK _ZN4absl7debian35Mutex6UnlockEv
#define HOIST_MUTEX_TRY_LOCK _ZN4absl7debian35Mutex7TryLockEv
#define HOIST_MUTEX_READER_LOCK _ZN4absl7debian35Mutex10ReaderLockEv
#define HOIST_MUTEX_READER_UNLOCK _ZN4absl7debian35Mutex12ReaderUnlockEv
#define HOIST_MUTEX_LOCK_WHEN _ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE
#define HOIST_MUTEX_AWAIT _ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE
#define HOIST_MUTEX_AWAIT_TIMEOUT \
  _ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE
#define HOIST_MUTEX_DTOR _ZN4absl7debian35MutexD1Ev
#define HOIST_CONDVAR_WAIT _ZN4absl7debian37CondVar4WaitEPNS0_5MutexE
#define HOIST_NOTIFY _ZN4absl7debian312Notification6NotifyEv
#define HOIST_WAIT_NOTIFICATION \
  _ZNK4absl7debian312Notification19WaitForNotificationEv
#define HOIST_WAIT_NOTIFICATION_TIMEOUT \
  _ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_8DurationE

#define HOIST_CAT(a, b) a##b
#define HOIST_REAL(sym) HOIST_CAT(__real_, sym)
#define HOIST_WRAP(sym) HOIST_CAT(__wrap_, sym)

extern "C" {

void HOIST_REAL(HOIST_MUTEX_LOCK)(Mutex* mu);
void HOIST_REAL(HOIST_MUTEX_UNLOCK)(Mutex* mu);
bool HOIST_REAL(HOIST_MUTEX_TRY_LOCK)(Mutex* mu);
void HOIST_REAL(HOIST_MUTEX_READER_LOCK)(Mutex* mu);
void HOIST_REAL(HOIST_MUTEX_READER_UNLOCK)(Mutex* mu);
void HOIST_REAL(HOIST_MUTEX_LOCK_WHEN)(Mutex* mu, const Condition* cond);
void HOIST_REAL(HOIST_MUTEX_AWAIT)(Mutex* mu, const Condition* cond);
bool HOIST_REAL(HOIST_MUTEX_AWAIT_TIMEOUT)(Mutex* mu, const Condition* cond,
                                           Duration timeout);
void HOIST_REAL(HOIST_MUTEX_DTOR)(Mutex* mu);
void HOIST_REAL(HOIST_CONDVAR_WAIT)(CondVar* cv, Mutex* mu);
void HOIST_REAL(HOIST_NOTIFY)(Notification* n);
void HOIST_REAL(HOIST_WAIT_NOTIFICATION)(const Notification* n);
bool HOIST_REAL(HOIST_WAIT_NOTIFICATION_TIMEOUT)(const Notification* n,
                                                 Duration timeout);

void HOIST_WRAP(HOIST_MUTEX_LOCK)(Mutex* mu) {
  __tsan_mutex_pre_lock(mu, 0);
  HOIST_REAL(HOIST_MUTEX_LOCK)(mu);
  __tsan_mutex_post_lock(mu, 0, 0);
}

void HOIST_WRAP(HOIST_MUTEX_UNLOCK)(Mutex* mu) {
  __tsan_mutex_pre_unlock(mu, 0);
  HOIST_REAL(HOIST_MUTEX_UNLOCK)(mu);
  __tsan_mutex_post_unlock(mu, 0);
}

bool HOIST_WRAP(HOIST_MUTEX_TRY_LOCK)(Mutex* mu) {
  __tsan_mutex_pre_lock(mu, __tsan_mutex_try_lock);
  bool locked = HOIST_REAL(HOIST_MUTEX_TRY_LOCK)(mu);
  __tsan_mutex_post_lock(
      mu, __tsan_mutex_try_lock | (locked ? 0 : __tsan_mutex_try_lock_failed),
      0);
  return locked;
}

void HOIST_WRAP(HOIST_MUTEX_READER_LOCK)(Mutex* mu) {
  __tsan_mutex_pre_lock(mu, __tsan_mutex_read_lock);
  HOIST_REAL(HOIST_MUTEX_READER_LOCK)(mu);
  __tsan_mutex_post_lock(mu, __tsan_mutex_read_lock, 0);
}

void HOIST_WRAP(HOIST_MUTEX_READER_UNLOCK)(Mutex* mu) {
  __tsan_mutex_pre_unlock(mu, __tsan_mutex_read_lock);
  HOIST_REAL(HOIST_MUTEX_READER_UNLOCK)(mu);
  __tsan_mutex_post_unlock(mu, __tsan_mutex_read_lock);
}

void HOIST_WRAP(HOIST_MUTEX_LOCK_WHEN)(Mutex* mu, const Condition* cond) {
  __tsan_mutex_pre_lock(mu, 0);
  HOIST_REAL(HOIST_MUTEX_LOCK_WHEN)(mu, cond);
  __tsan_mutex_post_lock(mu, 0, 0);
}

void HOIST_WRAP(HOIST_MUTEX_AWAIT)(Mutex* mu, const Condition* cond) {
  AnnotateReleaseForWait(mu);
  HOIST_REAL(HOIST_MUTEX_AWAIT)(mu, cond);
  AnnotateReacquireAfterWait(mu);
}

bool HOIST_WRAP(HOIST_MUTEX_AWAIT_TIMEOUT)(Mutex* mu, const Condition* cond,
                                           Duration timeout) {
  AnnotateReleaseForWait(mu);
  bool result = HOIST_REAL(HOIST_MUTEX_AWAIT_TIMEOUT)(mu, cond, timeout);
  AnnotateReacquireAfterWait(mu);
  return result;
}

void HOIST_WRAP(HOIST_MUTEX_DTOR)(Mutex* mu) {
  // Forget the mutex so a new one at the same address starts clean.
  __tsan_mutex_destroy(mu, 0);
  HOIST_REAL(HOIST_MUTEX_DTOR)(mu);
}

void HOIST_WRAP(HOIST_CONDVAR_WAIT)(CondVar* cv, Mutex* mu) {
  AnnotateReleaseForWait(mu);
  HOIST_REAL(HOIST_CONDVAR_WAIT)(cv, mu);
  AnnotateReacquireAfterWait(mu);
}

void HOIST_WRAP(HOIST_NOTIFY)(Notification* n) {
  __tsan_release(n);
  HOIST_REAL(HOIST_NOTIFY)(n);
}

void HOIST_WRAP(HOIST_WAIT_NOTIFICATION)(const Notification* n) {
  HOIST_REAL(HOIST_WAIT_NOTIFICATION)(n);
  __tsan_acquire(const_cast<Notification*>(n));
}

bool HOIST_WRAP(HOIST_WAIT_NOTIFICATION_TIMEOUT)(const Notification* n,
                                                 Duration timeout) {
  bool notified = HOIST_REAL(HOIST_WAIT_NOTIFICATION_TIMEOUT)(n, timeout);
  if (notified) __tsan_acquire(const_cast<Notification*>(n));
  return notified;
}

// ---- gRPC ----

// Besides the per-operation edges, one process-wide sync point covers the
// places where gRPC hands our code to a fresh thread with nothing to key on:
// a new call reaching a method handler after the server started, and
// OnCancel after the reactor was set up. Everything released here is
// acquired at those entry points (see common/tsan.h). It can only hide a
// race between two such entry points, never report a false one.
char hoist_tsan_grpc_edge;

// Calls `name` in the next library that defines it (the real gRPC).
static void* NextSymbol(const char* name) {
  void* fn = dlsym(RTLD_NEXT, name);
  if (fn == nullptr) abort();  // gRPC is always linked when this is used
  return fn;
}

// grpc::Server::Start(ServerCompletionQueue**, size_t): method handlers
// built before it run on gRPC threads after it. Defined under its mangled
// name so that it interposes gRPC's (hence the reserved identifier).
// NOLINTNEXTLINE(bugprone-reserved-identifier)
void _ZN4grpc6Server5StartEPPNS_21ServerCompletionQueueEm(void* server,
                                                          void** cqs,
                                                          size_t num_cqs) {
  using Start = void (*)(void*, void**, size_t);
  static Start real = reinterpret_cast<Start>(
      NextSymbol("_ZN4grpc6Server5StartEPPNS_21ServerCompletionQueueEm"));
  __tsan_release(&hoist_tsan_grpc_edge);
  real(server, cqs, num_cqs);
}

// grpc::Server::ShutdownInternal(gpr_timespec): returns after every
// callback RPC finished, so what their threads did happens before it.
struct GprTimespec {  // gpr_timespec, passed by value
  int64_t tv_sec;
  int32_t tv_nsec;
  int clock_type;
};
// NOLINTNEXTLINE(bugprone-reserved-identifier): interposes, as above
void _ZN4grpc6Server16ShutdownInternalE12gpr_timespec(void* server,
                                                      GprTimespec deadline) {
  using Shutdown = void (*)(void*, GprTimespec);
  static Shutdown real = reinterpret_cast<Shutdown>(
      NextSymbol("_ZN4grpc6Server16ShutdownInternalE12gpr_timespec"));
  real(server, deadline);
  __tsan_acquire(&hoist_tsan_grpc_edge);
}

// grpc_call_start_batch(call, ops, nops, tag, reserved): whatever runs when
// this batch completes (the tag's callback) happens after this call.
int grpc_call_start_batch(void* call, const void* ops, size_t nops, void* tag,
                          void* reserved) {
  using StartBatch = int (*)(void*, const void*, size_t, void*, void*);
  static StartBatch real =
      reinterpret_cast<StartBatch>(NextSymbol("grpc_call_start_batch"));
  __tsan_release(tag);
  __tsan_release(&hoist_tsan_grpc_edge);
  return real(call, ops, nops, tag, reserved);
}

}  // extern "C"
