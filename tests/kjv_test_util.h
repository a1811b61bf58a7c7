// tests/kjv_test_util.h — for the tests that read the built-in KJV corpus: where Debian's
// `bible` program is missing, the whole binary reports itself skipped (exit code 77,
// CTest's "Skipped") and says why.
#pragma once
#include <boost/test/unit_test.hpp>
#include <cstdio>
#include <cstdlib>

namespace rn::test {
struct RequireBible {
    RequireBible() {
        if (std::system("command -v bible >/dev/null 2>&1") != 0) {
            std::printf("SKIPPED: the `bible` program is not installed (apt-get install bible-kjv); KJV tests not run\n");
            std::exit(77);
        }
    }
};
}  // namespace rn::test

using rn::test::RequireBible;
BOOST_TEST_GLOBAL_FIXTURE(RequireBible);
