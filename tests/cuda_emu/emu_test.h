// tests/cuda_emu/emu_test.h — what the emulated kernel tests (tests/test_emu_*.cpp) share on
// top of the emulator: running a check in each of its modes (emu.h, rn_emu::Mode), each
// under a Boost.Test context that names the mode. Include after emu.h.
#pragma once
#include <boost/test/unit_test.hpp>

#include "tests/cuda_emu/emu.h"

namespace rn_emu {

// f() once in each mode of test_modes() (both, or only the first under ASan)
template <typename F>
void in_each_mode(F f) {
    for (Mode m : test_modes()) {
        ModeGuard guard(m);
        BOOST_TEST_CONTEXT(mode_name(m)) { f(); }
    }
}

}  // namespace rn_emu
