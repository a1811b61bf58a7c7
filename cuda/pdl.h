// cuda/pdl.h — programmatic dependent launch (Hopper and later) for the decode step.
//
// A decode step is ~140 small dependent kernels; in a CUDA graph each still pays the gap
// between one kernel's last block and the next one's first (~2 µs of the ~3 µs each costs
// on an H100). With programmatic dependent launch a kernel may start while the one before
// it runs: it does what depends on no earlier kernel (a matrix-vector product issues its
// weight loads), then waits at griddepcontrol.wait until the earlier kernel has finished
// and its writes are visible (cuda/pdl.cuh).
//
// The rule that keeps it correct: before its wait a kernel may read only memory that no
// kernel still running can write. Weights are such memory while a model decodes, so the
// kernels launch this way only inside a PdlScope, which the model's decode step opens;
// outside one (training, prefill, every other op) every launch is ordinary and the same
// kernels' wait is a no-op. RN_PDL=0 in the environment, or set_pdl_enabled(false), turns
// it off (for A/B measurements and tests: same arithmetic, so the same bits).
#pragma once

namespace rn::cuda {

void set_pdl_enabled(bool on);
bool pdl_enabled();    // the switch (default on unless RN_PDL=0)
bool pdl_supported();  // the current device is sm_90 or later
bool pdl_active();     // enabled, inside a PdlScope, and supported

class PdlScope {
public:
    PdlScope();
    ~PdlScope();
    PdlScope(const PdlScope&) = delete;
    PdlScope& operator=(const PdlScope&) = delete;
};

}  // namespace rn::cuda
