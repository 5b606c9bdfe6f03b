# For HOIST_TSAN builds only: copies of gRPC's callback headers with one-line
# TSan annotations where gRPC hands work between threads, so TSan sees the
# edges that gRPC's uninstrumented completion queue provides. The other half
# of each edge is in common/tsan_shim.cc (and common/tsan.h). Configuration
# fails if gRPC's headers no longer contain the lines we patch, rather than
# silently losing an edge.

set(HOIST_TSAN_INCLUDE_DIR ${CMAKE_BINARY_DIR}/tsan_include)

# hoist_tsan_patch_header(<path under /usr/include>
#                         <search> <replace> <expected count> [...])
function(hoist_tsan_patch_header relpath)
  set(source /usr/include/${relpath})
  file(READ ${source} text)
  # ARGV<n> rather than list(GET): the replacements contain semicolons.
  math(EXPR last "${ARGC} - 1")
  foreach(i RANGE 1 ${last} 3)
    math(EXPR j "${i} + 1")
    math(EXPR k "${i} + 2")
    set(search "${ARGV${i}}")
    set(replace "${ARGV${j}}")
    set(expected "${ARGV${k}}")
    string(LENGTH "${text}" before)
    string(REPLACE "${search}" "" stripped "${text}")
    string(LENGTH "${stripped}" after)
    string(LENGTH "${search}" one)
    math(EXPR found "(${before} - ${after}) / ${one}")
    if(NOT found EQUAL expected)
      message(FATAL_ERROR "TSan: ${source} has ${found} copies of a line to "
                          "annotate, expected ${expected}; update "
                          "cmake/TsanGrpcHeaders.cmake for this gRPC version")
    endif()
    string(REPLACE "${search}" "${replace}" text "${text}")
  endforeach()
  file(WRITE ${HOIST_TSAN_INCLUDE_DIR}/${relpath}
       "#include <sanitizer/tsan_interface.h>  // Hoist TSan build\n"
       "extern \"C\" char hoist_tsan_grpc_edge;  // common/tsan_shim.cc\n"
       "${text}")
endfunction()

# A completion callback runs after its batch was started
# (grpc_call_start_batch releases the tag).
hoist_tsan_patch_header(grpcpp/support/callback_common.h
  "  void Run(bool ok) {\n"
  "  void Run(bool ok) {\n    __tsan_acquire(this);\n"
  2)

hoist_tsan_patch_header(grpcpp/impl/codegen/server_callback_handlers.h
  # OnDone runs after every callback that counted down to it (Unref below)
  # and after OnCancel returned (common/tsan.h).
  "    void CallOnDone() override {\n"
  "    void CallOnDone() override {\n      __tsan_acquire(static_cast<::grpc::internal::ServerCallbackCall*>(this));\n      __tsan_acquire(&hoist_tsan_grpc_edge);\n"
  4
  # A new call reaches a method handler (deserializing its request first)
  # after the server started.
  "  void RunHandler(const HandlerParameter& param) final {\n"
  "  void RunHandler(const HandlerParameter& param) final {\n    __tsan_acquire(&hoist_tsan_grpc_edge);\n"
  4
  "    grpc::ByteBuffer buf;\n    buf.set_buffer(req);\n"
  "    __tsan_acquire(&hoist_tsan_grpc_edge);\n    grpc::ByteBuffer buf;\n    buf.set_buffer(req);\n"
  2)

hoist_tsan_patch_header(grpcpp/support/server_callback.h
  # Each instrumented count-down publishes what its thread did for OnDone.
  "    return callbacks_outstanding_.fetch_sub(1, std::memory_order_acq_rel);\n"
  "    __tsan_release(this);\n    return callbacks_outstanding_.fetch_sub(1, std::memory_order_acq_rel);\n"
  1
  # The reactor is set up (one of OnCancel's two preconditions); OnCancel
  # acquires hoist_tsan_grpc_edge (common/tsan.h).
  "    return on_cancel_conditions_remaining_.fetch_sub(\n"
  "    __tsan_release(&hoist_tsan_grpc_edge);\n    return on_cancel_conditions_remaining_.fetch_sub(\n"
  1)

# Client reactors: OnDone may be handed to a gRPC executor thread; Hoist's
# client reactors acquire the reactor at the top of OnDone (common/tsan.h).
hoist_tsan_patch_header(grpcpp/support/client_callback.h
  "        reactor->InternalScheduleOnDone(std::move(s));\n"
  "        __tsan_release(reactor);\n        reactor->InternalScheduleOnDone(std::move(s));\n"
  3)

include_directories(BEFORE SYSTEM ${HOIST_TSAN_INCLUDE_DIR})
