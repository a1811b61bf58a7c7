// tests/test_cuda_graph.cpp — CUDA graphs (cuda/graph.h) and the engine's graphed decode:
//   - a captured function runs only when replayed, and each replay reads the inputs as
//     they are then (written in place), giving what the eager ops give;
//   - memory the graph used is not handed to anyone else while the graph lives (tensors
//     allocated after the capture keep their values across replays);
//   - a capture that does something forbidden (a host copy) fails with a reason and the
//     device goes on working eagerly;
//   - the generation engine with cuda_graphs = 1 gives the tokens (and log-probabilities)
//     of the engine without, in f32 and bf16, while sequences join and leave (the batch
//     size changes, so several graphs are captured);
//   - programmatic dependent launch in the decode step (cuda/pdl.h) changes no bit: the
//     engine's tokens and log-probabilities with it equal those without, graphed and eager.
#include <boost/test/unit_test.hpp>

#include <map>

#include "cuda/graph.h"
#include "cuda/memory.h"
#include "cuda/pdl.h"
#include "cuda_test_util.h"
#include "nn/retnet.h"
#include "ops/ops.h"
#include "serving/engine.h"

using namespace rn;
using namespace rn::test;

namespace {
const Device gpu = Device::cuda(0);

Tensor f_of(const Tensor& x) { return exp(x) * 2.0 + x * x; }  // a few kernels and temporaries

std::vector<float> host(const Tensor& t) { return t.to(Device::cpu()).to(DType::f32).contiguous().to_vector<float>(); }
}  // namespace

BOOST_AUTO_TEST_CASE(replay_reads_inputs_in_place) {
    Generator g(301);
    Tensor x = uniform({4097}, -2, 2, g).to(gpu);
    cuda::Graph graph(0);
    Tensor out;
    bool capturing_inside = false;
    std::string why;
    BOOST_TEST(!cuda::stream_capturing());
    BOOST_REQUIRE_MESSAGE(graph.capture([&] {
        capturing_inside = cuda::stream_capturing();
        out = f_of(x);
    }, &why), why);
    BOOST_TEST(capturing_inside);
    BOOST_TEST(!cuda::stream_capturing());
    BOOST_TEST(graph.ready());
    for (int round = 0; round < 3; ++round) {
        Tensor fresh = uniform({4097}, -2, 2, g);
        copy_nograd(x, fresh);  // new inputs, same address
        graph.replay();
        const auto want = host(f_of(fresh.to(gpu)));
        const auto got = host(out);
        BOOST_REQUIRE(got.size() == want.size());
        for (size_t i = 0; i < got.size(); ++i) BOOST_REQUIRE_MESSAGE(got[i] == want[i], "round " << round << " at " << i);
    }
}

BOOST_AUTO_TEST_CASE(graph_memory_is_not_handed_out_while_the_graph_lives) {
    Generator g(302);
    const int64_t n = 1 << 16;
    Tensor x = uniform({n}, -1, 1, g).to(gpu);
    {
        // blocks of the size the capture will ask for, freed to the cache: the capture takes
        // them from there (the cache-hit path must mark them as the graph's too)
        std::vector<Tensor> warm;
        for (int i = 0; i < 6; ++i) warm.push_back(empty({n}, DType::f32, gpu));
    }
    auto graph = std::make_unique<cuda::Graph>(0);
    Tensor out;
    std::string why;
    BOOST_REQUIRE_MESSAGE(graph->capture([&] { out = f_of(x); }, &why), why);  // temporaries freed inside
    // the cache would otherwise hand the graph's freed temporaries to these
    std::vector<Tensor> others;
    for (int i = 0; i < 8; ++i) others.push_back(full({n}, double(i + 1), DType::f32, gpu));
    graph->replay();
    graph->replay();
    for (int i = 0; i < 8; ++i) {
        const auto v = host(others[size_t(i)]);
        BOOST_REQUIRE_MESSAGE(v.front() == float(i + 1) && v.back() == float(i + 1) && v[size_t(n / 2)] == float(i + 1),
                              "tensor " << i << " was overwritten by a replay");
    }
    const auto want = host(f_of(x)), got = host(out);
    for (size_t i = 0; i < got.size(); ++i) BOOST_REQUIRE(got[i] == want[i]);
    // released with the graph: the memory is usable again and the output stays readable
    const size_t reserved = cuda::memory_stats(0).reserved;
    graph.reset();
    if (cuda::caching_enabled()) BOOST_TEST(cuda::memory_stats(0).reserved == reserved);  // cached again, not freed
    const auto after = host(out);
    for (size_t i = 0; i < after.size(); ++i) BOOST_REQUIRE(after[i] == want[i]);
}

BOOST_AUTO_TEST_CASE(failed_capture_says_why_and_eager_work_goes_on) {
    Generator g(303);
    Tensor x = uniform({1000}, -1, 1, g).to(gpu);
    cuda::Graph graph(0);
    std::string why;
    const bool ok = graph.capture([&] { (void)f_of(x).to(Device::cpu()); }, &why);  // a host copy waits
    BOOST_TEST(!ok);
    BOOST_TEST(!graph.ready());
    BOOST_TEST(!why.empty());
    BOOST_TEST_MESSAGE("failed capture reported: " << why);
    BOOST_TEST(!cuda::stream_capturing());
    const auto want = host(f_of(x.to(Device::cpu())));
    const auto got = host(f_of(x));
    for (size_t i = 0; i < got.size(); ++i) BOOST_REQUIRE(std::abs(got[i] - want[i]) <= 1e-5f * (1 + std::abs(want[i])));
}

namespace {
std::shared_ptr<nn::RetNetLM> model_for_engine(uint64_t seed) {
    nn::ModelConfig c = nn::ModelConfig::from_preset("tiny", 211);
    c.d_model = 64;
    c.n_heads = 2;
    c.value_dim = 96;
    c.ffn_dim = 80;
    c.n_layers = 3;
    return std::make_shared<nn::RetNetLM>(c, seed);
}

struct Run {
    std::map<int64_t, std::vector<int32_t>> tokens;
    std::map<int64_t, std::vector<double>> logprobs;
    bool graphs = false;
    int64_t captured = 0;
};

// sequences that join and leave at different steps, greedy and sampled
Run run_engine(const std::string& dtype, int graphs, int greedy_on_device = -1) {
    tools::EngineOptions o;
    o.max_slots = 6;
    o.prefill_chunk = 16;
    o.device = "cuda";
    o.dtype = dtype;
    o.max_context = 256;
    o.cuda_graphs = graphs;
    o.greedy_on_device = greedy_on_device;
    tools::Engine e(model_for_engine(5), o);
    auto sp = [](double t, uint64_t seed) {
        tools::SamplingParams p;
        p.temperature = t;
        p.top_p = t > 0 ? 0.9 : 1.0;
        p.seed = seed;
        return p;
    };
    auto prompt = [](int n, int salt) {
        std::vector<int32_t> p;
        for (int i = 0; i < n; ++i) p.push_back(int32_t((i * 37 + salt * 11 + 1) % 200));
        return p;
    };
    Run r;
    e.add(prompt(5, 1), sp(0.0, 1), 30);
    e.add(prompt(9, 2), sp(0.8, 2), 12);
    for (int step = 0; !e.idle(); ++step) {
        BOOST_REQUIRE(step < 1000);
        if (step == 4) e.add(prompt(20, 3), sp(0.0, 3), 25);
        if (step == 7) {
            e.add(prompt(3, 4), sp(1.0, 4), 8);
            e.add(prompt(40, 5), sp(0.7, 5), 10);
        }
        for (const tools::EngineEvent& ev : e.step())
            if (ev.token >= 0) {
                r.tokens[ev.seq].push_back(ev.token);
                r.logprobs[ev.seq].push_back(ev.logprob);
            }
    }
    r.graphs = e.cuda_graphs();
    r.captured = e.graphs_captured();
    return r;
}
}  // namespace

BOOST_AUTO_TEST_CASE(engine_with_graphs_gives_the_same_tokens) {
    // bf16 and f32; f32 also with every row's choice made on the host
    const std::pair<std::string, int> cases[] = {{"f32", -1}, {"bf16", -1}, {"f32", 0}};
    for (const auto& [dtype, greedy_dev] : cases) {
        BOOST_TEST_CONTEXT("dtype " << dtype << ", greedy_on_device " << greedy_dev) {
            const Run plain = run_engine(dtype, 0, greedy_dev), graphed = run_engine(dtype, 1, greedy_dev);
            BOOST_TEST(!plain.graphs);
            BOOST_TEST(graphed.graphs, "a capture failed (the engine printed why on stderr)");
            BOOST_TEST(graphed.captured >= 3);  // batch sizes 1..5 came and went (captured on second use)
            BOOST_TEST_MESSAGE(dtype << ": " << graphed.captured << " decode graphs captured");
            BOOST_REQUIRE(plain.tokens.size() == 5u);
            BOOST_TEST(graphed.tokens == plain.tokens);
            for (const auto& [seq, lp] : plain.logprobs) {
                const auto& lg = graphed.logprobs.at(seq);
                BOOST_REQUIRE(lg.size() == lp.size());
                for (size_t i = 0; i < lp.size(); ++i)
                    BOOST_TEST(std::abs(lg[i] - lp[i]) <= 1e-5, "seq " << seq << " token " << i << ": " << lg[i] << " vs " << lp[i]);
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(programmatic_dependent_launch_changes_no_bit) {
    {
        // the path under test is really taken: on sm_90 and later a decode step's scope turns it on
        cuda::PdlScope scope;
        BOOST_TEST(cuda::pdl_active() == (cuda::pdl_supported() && cuda::pdl_enabled()));
        if (!cuda::pdl_supported()) BOOST_TEST_MESSAGE("a GPU before sm_90: no programmatic launch here, both runs are plain");
    }
    BOOST_TEST(!cuda::pdl_active());  // outside a decode step every launch is ordinary
    const bool was = cuda::pdl_enabled();
    for (const std::string dtype : {"f32", "bf16"})
        for (int graphs : {1, 0}) {
            BOOST_TEST_CONTEXT("dtype " << dtype << ", graphs " << graphs) {
                cuda::set_pdl_enabled(false);
                const Run off = run_engine(dtype, graphs);
                cuda::set_pdl_enabled(true);
                const Run on = run_engine(dtype, graphs);
                BOOST_REQUIRE(off.tokens.size() == 5u);
                BOOST_TEST(on.tokens == off.tokens);
                BOOST_TEST(on.logprobs == off.logprobs);  // the same kernels on the same data: bit for bit
            }
        }
    cuda::set_pdl_enabled(was);
}

BOOST_AUTO_TEST_CASE(graphs_stay_on_without_the_fused_kernels) {
    // with RN_DECODE_FUSION=0 every fused op runs its composition, which must be capturable too
    const bool was = decode_fusion_enabled();
    set_decode_fusion_enabled(false);
    const Run r = run_engine("f32", 1);
    set_decode_fusion_enabled(was);
    BOOST_TEST(r.graphs, "a capture failed without the fused kernels (the engine printed why on stderr)");
    BOOST_TEST(r.captured >= 3);
    const Run fused = run_engine("f32", 1);
    BOOST_REQUIRE(r.tokens.size() == 5u);
    BOOST_TEST(r.tokens.begin()->second == fused.tokens.begin()->second);  // the first (greedy) sequence: the same tokens
}
