// ThreadSanitizer happens-before annotations for gRPC entry points.
//
// Debian's gRPC is not built with TSan, so TSan cannot see that gRPC orders
// a reactor's set-up before its OnCancel, or a client reactor's last
// callback before an OnDone that gRPC moved to an executor thread. The TSan
// build (HOIST_TSAN) publishes those edges from annotated copies of gRPC's
// headers and common/tsan_shim.cc; the functions here are the receiving
// side, called first thing in the reactor methods that gRPC enters from its
// own threads. In every other build they compile to nothing.
#ifndef HOIST_COMMON_TSAN_H_
#define HOIST_COMMON_TSAN_H_

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
extern "C" char hoist_tsan_grpc_edge;  // defined in common/tsan_shim.cc
#endif

namespace hoist {

// Declared first in a server reactor's OnCancel(): what set the reactor up
// happens before the body, and the body happens before OnDone (gRPC calls
// OnDone after OnCancel returned, from its uninstrumented code).
class TsanServerOnCancelScope {
 public:
  TsanServerOnCancelScope() {
#if defined(__SANITIZE_THREAD__)
    __tsan_acquire(&hoist_tsan_grpc_edge);
#endif
  }
  ~TsanServerOnCancelScope() {
#if defined(__SANITIZE_THREAD__)
    __tsan_release(&hoist_tsan_grpc_edge);
#endif
  }
  TsanServerOnCancelScope(const TsanServerOnCancelScope&) = delete;
  TsanServerOnCancelScope& operator=(const TsanServerOnCancelScope&) = delete;
};

// First statement of a client reactor's OnDone(); `reactor` is the reactor
// as gRPC knows it (the grpc::internal::ClientReactor base).
inline void TsanClientOnDoneEntry(const void* reactor) {
#if defined(__SANITIZE_THREAD__)
  __tsan_acquire(const_cast<void*>(reactor));
#else
  (void)reactor;
#endif
}

// A hand-off of `object` from one thread to another through the kernel
// (epoll_ctl() on one side, epoll_wait() on the other), which orders them
// but which TSan does not see: TsanRelease before handing over, TsanAcquire
// after taking over. Nothing in other builds.
inline void TsanRelease(const void* object) {
#if defined(__SANITIZE_THREAD__)
  __tsan_release(const_cast<void*>(object));
#else
  (void)object;
#endif
}
inline void TsanAcquire(const void* object) {
#if defined(__SANITIZE_THREAD__)
  __tsan_acquire(const_cast<void*>(object));
#else
  (void)object;
#endif
}

}  // namespace hoist

#endif  // HOIST_COMMON_TSAN_H_
