// tests/engine_test_util.h — what the generation-engine tests share: running an Engine until
// it is idle and collecting each sequence's tokens and finish reason.
#pragma once
#include <boost/test/unit_test.hpp>

#include <map>
#include <string>
#include <vector>

#include "serving/engine.h"

namespace rn::test {

// runs the engine until idle; tokens per sequence id, and the finish reason of each
inline std::map<int64_t, std::vector<int32_t>> run_all(tools::Engine& e,
                                                        std::map<int64_t, std::string>* reasons = nullptr) {
    std::map<int64_t, std::vector<int32_t>> out;
    for (int guard = 0; !e.idle(); ++guard) {
        BOOST_REQUIRE(guard < 10000);
        for (const tools::EngineEvent& ev : e.step()) {
            if (ev.token >= 0) out[ev.seq].push_back(ev.token);
            if (ev.finished && reasons) (*reasons)[ev.seq] = ev.finish_reason;
        }
    }
    return out;
}

}  // namespace rn::test
