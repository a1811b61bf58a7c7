// tests/test_checkpoint.cpp — HDF5 checkpoints (nn/checkpoint.h) and `retnet inspect`
// (tools/inspect.h): save → load into a differently seeded model gives identical
// parameters, logits and optimizer behaviour; training state, tokenizer and metadata round
// trip; truncated, damaged and foreign files give clear errors; a model that does not fit
// names the parameter and both shapes; a save that fails at any stage (or on a full disk)
// leaves the previous file byte-identical and no temporary behind; inspect's JSON and diff;
// load_model builds either arch from its file.
#include <boost/test/unit_test.hpp>

#include <hdf5.h>  // to damage and edit real checkpoints the way another tool would
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cuda/device.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "nn/retnet.h"
#include "nn/transformer.h"
#include "test_util.h"
#include "serving/generate.h"
#include "tools/inspect.h"

using namespace rn;
using namespace rn::test;
using namespace rn::nn;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

ModelConfig micro() {
    ModelConfig c;
    c.vocab_size = 11;
    c.d_model = 8;
    c.n_heads = 2;
    c.value_dim = 12;
    c.ffn_dim = 10;
    c.n_layers = 2;
    return c;
}

// a fresh directory per test case, removed at the end
struct TempDir {
    fs::path path;
    TempDir() {
        static int n = 0;
        path = fs::temp_directory_path() / ("rn_ckpt_test_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
        fs::remove_all(path);
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string operator/(const std::string& name) const { return (path / name).string(); }
};

std::string read_bytes(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}
void write_bytes(const std::string& p, const std::string& bytes) {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), std::streamsize(bytes.size()));
}

bool any_temp_file(const fs::path& dir) {
    for (const auto& e : fs::directory_iterator(dir))
        if (e.path().filename().string().find(".tmp.") != std::string::npos) return true;
    return false;
}

// one AdamW step on a next-token loss, so the moments and the step count are not trivial
void train_step(RetNetLM& model, AdamW& opt, uint64_t seed) {
    Generator g(seed);
    const auto& cfg = model.config();
    Tensor tokens = randint(0, cfg.vocab_size, {2, 5}, g), targets = randint(0, cfg.vocab_size, {2, 5}, g);
    model.zero_grad();
    Tensor logits = model.forward(tokens);
    cross_entropy(logits.reshape({-1, cfg.vocab_size}), targets.reshape({-1})).backward();
    opt.step(1e-2);
}

Tensor logits_of(const RetNetLM& model) {
    Generator g(99);
    Tensor tokens = randint(0, model.config().vocab_size, {2, 7}, g);
    NoGradGuard no_grad;
    return model.forward(tokens);
}

TrainState some_state() {
    TrainState s;
    s.step = 1234;
    s.tokens = 5'000'000'123LL;
    s.rng_seed = 0xFFFFFFFFFFFFFFF0ULL;  // uint64 values above int64's range survive
    s.rng_offset = 987654321987ULL;
    s.data_state_json = R"({"shard":3,"offset":4096,"epoch":1})";
    s.best_val_loss = 2.718281828;
    s.wall_seconds = 3600.5;
    return s;
}

std::string some_tokenizer() {
    std::string t = "\x0a\x00\x01sentencepiece\xff\x00 model bytes";
    t += std::string(300, '\x7f');
    t[2] = '\0';
    return t;
}

void expect_same_params(const RetNetLM& a, const RetNetLM& b) {
    auto pa = a.named_parameters(), pb = b.named_parameters();
    BOOST_REQUIRE(pa.size() == pb.size());
    for (size_t i = 0; i < pa.size(); ++i) {
        BOOST_TEST(pa[i].first == pb[i].first);
        BOOST_TEST(pa[i].second.to_vector<float>() == pb[i].second.to_vector<float>(), boost::test_tools::per_element());
    }
}

bool has_gpu() { return cuda::built_with_cuda() && cuda::device_count() > 0; }

// ---- editing a checkpoint through the HDF5 C API: HDF5 recomputes its own checksums, so
// only retnet's (fnv1a64) and its value checks can notice

uint64_t fnv1a64(const std::string& s) {
    uint64_t h = 1469598103934665603ULL;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
    return h;
}

// opens `path` read-write, hands the file id to `edit`, closes it; fails the test on any
// HDF5 error (the edit itself must work for the test to mean anything)
template <typename F>
void edit_h5(const std::string& path, F&& edit) {
    hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    BOOST_REQUIRE(f >= 0);
    edit(f);
    BOOST_REQUIRE(H5Fclose(f) >= 0);
}

template <typename T>
void set_num_attr(hid_t file, const char* obj, const char* name, hid_t mem_type, T value) {
    hid_t o = H5Oopen(file, obj, H5P_DEFAULT);
    BOOST_REQUIRE(o >= 0);
    hid_t a = H5Aopen(o, name, H5P_DEFAULT);
    BOOST_REQUIRE(a >= 0);
    BOOST_REQUIRE(H5Awrite(a, mem_type, &value) >= 0);
    H5Aclose(a);
    H5Oclose(o);
}

// rewrites a fixed-length string attribute in place, keeping its size
void set_string_attr(hid_t file, const char* obj, const char* name, std::string value) {
    hid_t o = H5Oopen(file, obj, H5P_DEFAULT);
    hid_t a = H5Aopen(o, name, H5P_DEFAULT);
    BOOST_REQUIRE(a >= 0);
    hid_t t = H5Aget_type(a);
    value.resize(H5Tget_size(t), ' ');
    BOOST_REQUIRE(H5Awrite(a, t, value.data()) >= 0);
    H5Tclose(t);
    H5Aclose(a);
    H5Oclose(o);
}

void delete_attr(hid_t file, const char* obj, const char* name) {
    hid_t o = H5Oopen(file, obj, H5P_DEFAULT);
    BOOST_REQUIRE(H5Adelete(o, name) >= 0);
    H5Oclose(o);
}

// applies `change` to the raw bytes of a dataset (a fixed-length string, the tokenizer's
// uint8s or the optimizer's int64 step) and writes them back in the file's own type
void edit_dataset_bytes(hid_t file, const char* name, const std::function<void(std::string&)>& change) {
    hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
    BOOST_REQUIRE(d >= 0);
    hid_t t = H5Dget_type(d);
    const size_t n = size_t(H5Dget_storage_size(d));
    std::string bytes(std::max<size_t>(n, H5Tget_size(t)), '\0');
    BOOST_REQUIRE(H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()) >= 0);
    change(bytes);
    BOOST_REQUIRE(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()) >= 0);
    H5Tclose(t);
    H5Dclose(d);
}

// replaces /config by `json`, with a valid fnv1a64 (a crafted file, not a damaged one)
void replace_config(const std::string& path, const std::string& json) {
    edit_h5(path, [&](hid_t f) {
        BOOST_REQUIRE(H5Ldelete(f, "config", H5P_DEFAULT) >= 0);
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, json.size());
        H5Tset_strpad(t, H5T_STR_NULLPAD);
        H5Tset_cset(t, H5T_CSET_UTF8);
        hid_t sp = H5Screate(H5S_SCALAR);
        hid_t d = H5Dcreate2(f, "config", t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        BOOST_REQUIRE(d >= 0);
        BOOST_REQUIRE(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, json.data()) >= 0);
        uint64_t h = fnv1a64(json);
        hid_t a = H5Acreate2(d, "fnv1a64", H5T_STD_U64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
        BOOST_REQUIRE(H5Awrite(a, H5T_NATIVE_UINT64, &h) >= 0);
        H5Aclose(a);
        H5Dclose(d);
        H5Sclose(sp);
        H5Tclose(t);
    });
}

// the file offset of a contiguous dataset's raw bytes (where a flipped bit on disk lands)
uint64_t raw_offset(const std::string& path, const char* name) {
    uint64_t off = 0;
    edit_h5(path, [&](hid_t f) {
        hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
        haddr_t a = H5Dget_offset(d);
        BOOST_REQUIRE(a != HADDR_UNDEF);
        off = uint64_t(a);
        H5Dclose(d);
    });
    return off;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(checkpoint)

BOOST_AUTO_TEST_CASE(save_then_load_gives_identical_model_and_optimizer) {
    TempDir dir;
    const std::string path = dir / "ckpt.h5";
    RetNetLM a(micro(), 1);
    AdamW opt_a(a.named_parameters(), AdamWOptions{});
    train_step(a, opt_a, 10);
    train_step(a, opt_a, 11);
    save_checkpoint(path, a, &opt_a, some_state(), some_tokenizer());
    BOOST_TEST(!any_temp_file(dir.path));

    RetNetLM b(micro(), 2);  // different seed: different weights before loading
    BOOST_TEST(max_abs_diff(logits_of(a), logits_of(b)) > 0);
    AdamW opt_b(b.named_parameters(), AdamWOptions{});
    Checkpoint ck = read_checkpoint(path);
    BOOST_TEST(ck.format_version == kCheckpointFormatVersion);
    BOOST_TEST(ck.config.to_json() == micro().to_json());
    BOOST_TEST(ck.num_parameters() == a.num_parameters());
    load_into(ck, b, &opt_b);

    expect_same_params(a, b);
    BOOST_TEST(max_abs_diff(logits_of(a), logits_of(b)) == 0.0);  // bit-identical logits
    // optimizer state: step count and moments, and hence the next update, are the same
    BOOST_TEST(opt_b.step_count() == 2);
    double moment_mass = 0;  // the moments are not zeros: the test would pass on zeros
    for (size_t i = 0; i < opt_a.slots().size(); ++i) {
        auto& sa = opt_a.slots()[i];
        auto& sb = opt_b.slots()[i];
        BOOST_TEST(sa.m.to_vector<float>() == sb.m.to_vector<float>(), boost::test_tools::per_element());
        BOOST_TEST(sa.v.to_vector<float>() == sb.v.to_vector<float>(), boost::test_tools::per_element());
        for (float x : sb.v.to_vector<float>()) moment_mass += x;
    }
    BOOST_TEST(moment_mass > 0.0);
    BOOST_TEST(ck.optimizer.present);
    BOOST_TEST(ck.optimizer.options().beta2 == AdamWOptions{}.beta2);
    // the optimizer stayed attached to b's parameters (loading copies in place)
    train_step(a, opt_a, 12);
    train_step(b, opt_b, 12);
    expect_same_params(a, b);
}

BOOST_AUTO_TEST_CASE(train_state_tokenizer_metadata_round_trip) {
    TempDir dir;
    RetNetLM m(micro(), 3);
    const std::string meta = R"({"git":"abc123","argv":["retnet","train"]})";
    save_checkpoint(dir / "a.h5", m, nullptr, some_state(), some_tokenizer(), meta);
    Checkpoint ck = read_checkpoint(dir / "a.h5");
    TrainState s = some_state();
    BOOST_TEST(ck.train.step == s.step);
    BOOST_TEST(ck.train.tokens == s.tokens);
    BOOST_TEST(ck.train.rng_seed == s.rng_seed);
    BOOST_TEST(ck.train.rng_offset == s.rng_offset);
    BOOST_TEST(ck.train.data_state_json == s.data_state_json);
    BOOST_TEST(ck.train.best_val_loss == s.best_val_loss);
    BOOST_TEST(ck.train.wall_seconds == s.wall_seconds);
    BOOST_TEST(ck.tokenizer == some_tokenizer());  // binary, embedded NULs included
    BOOST_TEST(json::parse(ck.metadata_json) == json::parse(meta));
    BOOST_TEST(!ck.optimizer.present);  // saved without an optimizer
    // a generator restored from the state continues the same stream
    Generator g1(s.rng_seed);
    g1.set_state(s.rng_seed, s.rng_offset);
    Generator g2;
    g2.set_state(ck.train.rng_seed, ck.train.rng_offset);
    BOOST_TEST(g1.next_u64() == g2.next_u64());
    // defaults: no tokenizer, best loss +inf
    save_checkpoint(dir / "b.h5", m, nullptr, TrainState{});
    Checkpoint cb = read_checkpoint(dir / "b.h5");
    BOOST_TEST(cb.tokenizer.empty());
    BOOST_TEST(std::isinf(cb.train.best_val_loss));
    BOOST_TEST(cb.metadata_json == "{}");
    // weights-only checkpoints refuse to fill an optimizer, and say what to do
    AdamW opt(m.named_parameters(), AdamWOptions{});
    RN_CHECK_THROWS_WITH(load_into(cb, m, &opt), "has no optimizer state");
    // ReadOptions: shapes only
    Checkpoint shapes = read_checkpoint(dir / "b.h5", ReadOptions{false, false});
    BOOST_TEST(shapes.model.at("embed_tokens.weight").shape == Shape({11, 8}));
    BOOST_TEST(shapes.model.at("embed_tokens.weight").data.empty());
    // names come back in the model's order, not alphabetically
    std::vector<std::string> names;
    for (auto& [n, p] : m.named_parameters()) names.push_back(n);
    BOOST_TEST(cb.names == names, boost::test_tools::per_element());
    // bad JSON is refused before anything is written
    RN_CHECK_THROWS_WITH(save_checkpoint(dir / "c.h5", m, nullptr, TrainState{}, "", "not json"), "metadata");
    BOOST_TEST(!fs::exists(dir / "c.h5"));
}

BOOST_AUTO_TEST_CASE(damaged_files_give_clear_errors) {
    TempDir dir;
    RetNetLM m(micro(), 4);
    save_checkpoint(dir / "good.h5", m, nullptr, TrainState{});
    const std::string good = read_bytes(dir / "good.h5");
    BOOST_REQUIRE(good.size() > 1000);

    write_bytes(dir / "truncated.h5", good.substr(0, good.size() / 2));
    RN_CHECK_THROWS_WITH(read_checkpoint(dir / "truncated.h5"), "corrupt or truncated");
    RN_CHECK_THROWS_WITH(read_checkpoint(dir / "truncated.h5"), "truncated.h5");

    std::string garbage(4096, '\0');
    Generator g(5);
    for (auto& c : garbage) c = char(g.next_u64() & 0xff);
    write_bytes(dir / "garbage.h5", garbage);
    RN_CHECK_THROWS_WITH(read_checkpoint(dir / "garbage.h5"), "not an HDF5 file");
    write_bytes(dir / "empty.h5", "");
    RN_CHECK_THROWS_WITH(read_checkpoint(dir / "empty.h5"), "not an HDF5 file");
    RN_CHECK_THROWS_WITH(read_checkpoint(dir / "absent.h5"), "no such file");
    RN_CHECK_THROWS_WITH(read_checkpoint(dir.path.string()), "is a directory");

    // a flipped byte in the superblock's end-of-file address: the checksum catches it
    std::string flipped = good;
    flipped[30] = char(flipped[30] ^ 0x5a);
    write_bytes(dir / "flipped.h5", flipped);
    RN_CHECK_THROWS_WITH(read_checkpoint(dir / "flipped.h5"), "corrupt or truncated");

    // a flipped bit anywhere: an error, or (in padding) the very same values; never a crash
    // and never different values loaded silently — metadata, chunk indexes and tensors carry
    // checksums, and strings are fixed-length (HDF5 crashes on a damaged variable-length one)
    {
        RetNetLM ref_model(micro(), 4);
        Checkpoint ref = read_checkpoint(dir / "good.h5");
        int errors = 0, same = 0;
        for (size_t i = 0; i < good.size(); i += 37) {
            std::string bad = good;
            bad[i] = char(bad[i] ^ 0x10);
            write_bytes(dir / "bad.h5", bad);
            try {
                Checkpoint ck = read_checkpoint(dir / "bad.h5");
                bool equal = ck.config_json == ref.config_json && ck.names == ref.names;
                for (const auto& [n, t] : ref.model) equal = equal && ck.model.at(n).data == t.data;
                BOOST_TEST(equal, "flipping byte " << i << " changed what was read, silently");
                ++same;
            } catch (const Error&) {
                ++errors;
            }
        }
        BOOST_TEST(errors > same);
        BOOST_TEST_MESSAGE("flipped bytes: " << errors << " errors, " << same << " harmless");
    }

    // every prefix length fails cleanly (never crashes, never "succeeds" with missing data)
    for (size_t cut : {size_t(8), size_t(64), size_t(512), good.size() - 100, good.size() - 1}) {
        write_bytes(dir / "cut.h5", good.substr(0, cut));
        bool threw = false;
        try {
            read_checkpoint(dir / "cut.h5");
        } catch (const Error&) {
            threw = true;
        }
        BOOST_TEST(threw, "a file cut to " << cut << " of " << good.size() << " bytes was read without error");
    }
}

BOOST_AUTO_TEST_CASE(a_model_that_does_not_fit_names_parameter_and_shapes) {
    TempDir dir;
    RetNetLM m(micro(), 5);
    save_checkpoint(dir / "a.h5", m, nullptr, TrainState{});
    Checkpoint ck = read_checkpoint(dir / "a.h5");

    ModelConfig wide = micro();
    wide.d_model = 16;
    RetNetLM w(wide, 6);
    auto before = w.parameter("embed_tokens.weight").to_vector<float>();
    RN_CHECK_THROWS_WITH(load_into(ck, w), "a config that does not fit the checkpoint");
    RN_CHECK_THROWS_WITH(load_into(ck, w),
                         "parameter 'embed_tokens.weight' has shape [11, 16] in the model but [11, 8] in the checkpoint");
    // nothing was written by the failed load
    BOOST_TEST(w.parameter("embed_tokens.weight").to_vector<float>() == before, boost::test_tools::per_element());

    ModelConfig deep = micro();
    deep.n_layers = 3;
    RetNetLM d(deep, 7);
    RN_CHECK_THROWS_WITH(load_into(ck, d), "'layers.2.retention.q_proj.weight' [8, 8] is in the model but not in the checkpoint");
    ModelConfig shallow = micro();
    shallow.n_layers = 1;
    RetNetLM s(shallow, 8);
    RN_CHECK_THROWS_WITH(load_into(ck, s), "'layers.1.ffn.fc1.weight' [10, 8] is in the checkpoint but not in the model");
    // the fix the message points at works
    RetNetLM right(ck.config, 9);
    load_into(ck, right);
    expect_same_params(m, right);
}

BOOST_AUTO_TEST_CASE(a_failed_save_leaves_the_previous_file_intact) {
    TempDir dir;
    const std::string path = dir / "ckpt.h5";
    RetNetLM v1(micro(), 10), v2(micro(), 11);
    AdamW opt(v2.named_parameters(), AdamWOptions{});
    save_checkpoint(path, v1, nullptr, TrainState{});
    const std::string old_bytes = read_bytes(path);

    // a failure (or a kill) at every stage of the write
    for (const char* at : {"created", "model", "optimizer", "closed", "synced"}) {
        nn::detail::checkpoint_fault_hook = [at](const std::string& stage) {
            if (stage == at) throw Error(std::string("simulated failure at ") + at);
        };
        RN_CHECK_THROWS_WITH(save_checkpoint(path, v2, &opt, some_state(), some_tokenizer()),
                             std::string("simulated failure at ") + at);
        nn::detail::checkpoint_fault_hook = nullptr;
        BOOST_TEST(read_bytes(path) == old_bytes, "checkpoint changed by a save that failed at " << at);
        BOOST_TEST(!any_temp_file(dir.path), "temporary file left by a save that failed at " << at);
    }
    nn::detail::checkpoint_fault_hook = nullptr;
    RN_CHECK_THROWS_WITH(save_checkpoint(path, v2, nullptr, TrainState{}, "", "[1]"), "must be a JSON object");
    BOOST_TEST(read_bytes(path) == old_bytes);

    // a full disk: the file-size limit makes write() fail with EFBIG part way through
    {
        struct rlimit old_lim;
        BOOST_REQUIRE(getrlimit(RLIMIT_FSIZE, &old_lim) == 0);
        auto old_handler = signal(SIGXFSZ, SIG_IGN);  // else the kernel kills us instead
        struct rlimit lim = old_lim;
        lim.rlim_cur = 2048;
        BOOST_REQUIRE(setrlimit(RLIMIT_FSIZE, &lim) == 0);
        std::string msg;
        try {
            save_checkpoint(path, v2, &opt, some_state(), some_tokenizer());
        } catch (const Error& e) {
            msg = e.what();
        }
        setrlimit(RLIMIT_FSIZE, &old_lim);
        signal(SIGXFSZ, old_handler);
        BOOST_TEST(!msg.empty(), "a save past the file-size limit did not fail");
        BOOST_TEST(msg.find(path) != std::string::npos, msg);
        BOOST_TEST(msg.find("untouched") != std::string::npos, msg);
        BOOST_TEST_MESSAGE("full-disk error: " << msg);
        BOOST_TEST(read_bytes(path) == old_bytes);
        BOOST_TEST(!any_temp_file(dir.path));
    }

    // a directory that does not exist: an error naming the path and the reason
    const std::string nowhere = dir / "no/such/dir/ckpt.h5";
    RN_CHECK_THROWS_WITH(save_checkpoint(nowhere, v2, nullptr, TrainState{}), nowhere);
    RN_CHECK_THROWS_WITH(save_checkpoint(nowhere, v2, nullptr, TrainState{}), "No such file or directory");

    // and a save that succeeds replaces the file
    save_checkpoint(path, v2, &opt, TrainState{});
    BOOST_TEST(read_bytes(path) != old_bytes);
    RetNetLM back(micro(), 12);
    load_into(read_checkpoint(path), back);
    expect_same_params(v2, back);
}

BOOST_AUTO_TEST_CASE(checkpoint_directories) {
    TempDir dir;
    RetNetLM m(micro(), 13);
    for (int64_t step : {5, 100, 10, 20}) {
        TrainState s;
        s.step = step;
        save_checkpoint(checkpoint_path(dir.path.string(), step), m, nullptr, s);
    }
    write_bytes(dir / "notes.h5", "x");
    BOOST_TEST(fs::path(checkpoint_path("runs/a", 7)).filename() == "ckpt_7.h5");
    auto all = list_checkpoints(dir.path.string());
    BOOST_REQUIRE(all.size() == 4u);
    BOOST_TEST(all.front().first == 5);
    BOOST_TEST(all.back().first == 100);  // numeric, not lexicographic, order
    BOOST_TEST(latest_checkpoint(dir.path.string()) == checkpoint_path(dir.path.string(), 100));
    BOOST_TEST(latest_checkpoint((dir.path / "absent").string()) == "");

    promote_to_best(dir.path.string(), checkpoint_path(dir.path.string(), 10));
    auto removed = keep_last_k(dir.path.string(), 2);
    BOOST_TEST(removed.size() == 2u);
    BOOST_TEST(!fs::exists(checkpoint_path(dir.path.string(), 5)));
    BOOST_TEST(!fs::exists(checkpoint_path(dir.path.string(), 10)));
    BOOST_TEST(fs::exists(checkpoint_path(dir.path.string(), 20)));
    BOOST_TEST(fs::exists(dir / "notes.h5"));
    // best.h5 outlives the pruned ckpt_10.h5 it was promoted from
    BOOST_TEST(read_checkpoint(best_checkpoint_path(dir.path.string())).train.step == 10);

    // temporaries of dead writers go, a live writer's stays
    const std::string dead = dir / "ckpt_30.h5.tmp.999999999";
    const std::string live = dir / ("ckpt_40.h5.tmp." + std::to_string(::getpid()));
    write_bytes(dead, "");  // created by a writer that died before writing (ours are HDF5 or empty)
    write_bytes(live, "partial");
    auto stale = remove_stale_temp_files(dir.path.string());
    BOOST_TEST(stale.size() == 1u);
    BOOST_TEST(!fs::exists(dead));
    BOOST_TEST(fs::exists(live));
}

// The cause of "promote_to_best: could not copy ckpt_50.h5 ... No such file or directory":
// a new run's ckpt_50.h5 in a folder that still held an older run's ckpt_150/ckpt_200 was
// the oldest by step, so pruning removed it before it was promoted. The file just written
// is now never pruned.
BOOST_AUTO_TEST_CASE(keep_last_k_never_removes_the_checkpoint_just_written) {
    TempDir dir;
    RetNetLM m(micro(), 15);
    for (int64_t step : {150, 200, 50}) {  // an older run's two, then the new run's first
        TrainState s;
        s.step = step;
        save_checkpoint(checkpoint_path(dir.path.string(), step), m, nullptr, s);
    }
    const std::string fresh = checkpoint_path(dir.path.string(), 50);
    auto removed = keep_last_k(dir.path.string(), 2, {fresh});
    BOOST_TEST(fs::exists(fresh));
    BOOST_TEST(removed.empty());  // the two newest by step stay too
    BOOST_CHECK_NO_THROW(promote_to_best(dir.path.string(), fresh));
    BOOST_TEST(read_checkpoint(best_checkpoint_path(dir.path.string())).train.step == 50);
    // without the protection the oldest by step goes, as before
    removed = keep_last_k(dir.path.string(), 2);
    BOOST_TEST(removed.size() == 1u);
    BOOST_TEST(!fs::exists(fresh));
}

// Stale-temporary cleaning deletes only what our writers leave: a user's own *.tmp.<n>
// files, a non-HDF5 file under our naming, a symlink and a live writer's file all stay.
BOOST_AUTO_TEST_CASE(stale_temp_cleaning_removes_only_our_own_files) {
    TempDir dir;
    RetNetLM m(micro(), 16);
    save_checkpoint(dir / "ckpt_3.h5", m, nullptr, TrainState{});
    const std::string dead_ckpt = dir / "ckpt_30.h5.tmp.999999999", dead_best = dir / "best.h5.tmp.999999998",
                      dead_empty = dir / "ckpt_31.h5.tmp.999999997";
    fs::copy_file(dir / "ckpt_3.h5", dead_ckpt);  // an HDF5 file, as our writer starts it
    fs::copy_file(dir / "ckpt_3.h5", dead_best);
    write_bytes(dead_empty, "");                  // created, nothing written yet
    const std::string user_notes = dir / "notes.txt.tmp.999999999", user_data = dir / "data.tmp.12",
                      user_named_like_ours = dir / "ckpt_32.h5.tmp.999999999",
                      live = dir / ("ckpt_40.h5.tmp." + std::to_string(::getpid())), link = dir / "best.h5.tmp.999999996";
    write_bytes(user_notes, "my notes");
    write_bytes(user_data, "my data");
    write_bytes(user_named_like_ours, "not HDF5");
    fs::copy_file(dir / "ckpt_3.h5", live);
    fs::create_symlink(dir / "ckpt_3.h5", link);
    auto removed = remove_stale_temp_files(dir.path.string());
    BOOST_TEST(removed.size() == 3u);
    BOOST_TEST(!fs::exists(dead_ckpt));
    BOOST_TEST(!fs::exists(dead_best));
    BOOST_TEST(!fs::exists(dead_empty));
    for (const auto& kept : {user_notes, user_data, user_named_like_ours, live, dir / "ckpt_3.h5"})
        BOOST_TEST(fs::exists(kept), kept << " must stay");
    BOOST_TEST(fs::is_symlink(link));
}

BOOST_AUTO_TEST_CASE(inspect_json_lists_every_parameter_with_its_stats) {
    TempDir dir;
    RetNetLM m(micro(), 14);
    AdamW opt(m.named_parameters(), AdamWOptions{});
    train_step(m, opt, 3);
    save_checkpoint(dir / "a.h5", m, &opt, some_state(), some_tokenizer());

    std::ostringstream out;
    tools::InspectOptions o;
    o.path = dir / "a.h5";
    o.json = true;
    o.out = &out;
    BOOST_TEST(tools::run_inspect(o) == 0);
    json j = json::parse(out.str());
    BOOST_TEST(j["num_parameters"].get<int64_t>() == m.num_parameters());
    BOOST_TEST(j["train_state"]["step"].get<int64_t>() == 1234);
    BOOST_TEST(j["train_state"]["rng_seed"].get<uint64_t>() == some_state().rng_seed);
    BOOST_TEST(j["train_state"]["data_state"]["shard"].get<int>() == 3);
    BOOST_TEST(j["config"]["d_model"].get<int64_t>() == 8);
    BOOST_TEST(j["optimizer"]["step"].get<int64_t>() == 1);
    BOOST_TEST(j["tokenizer_bytes"].get<size_t>() == some_tokenizer().size());
    auto named = m.named_parameters();
    BOOST_REQUIRE(j["tensors"].size() == named.size());
    for (size_t i = 0; i < named.size(); ++i) {
        const json& t = j["tensors"][i];
        BOOST_TEST(t["name"].get<std::string>() == named[i].first);
        BOOST_TEST(t["shape"].get<Shape>() == named[i].second.shape());
        BOOST_TEST(t["dtype"].get<std::string>() == "f32");
        auto v = named[i].second.to_vector<double>();
        double mean = 0, sq = 0, mn = v[0], mx = v[0];
        for (double x : v) {
            mean += x;
            sq += x * x;
            mn = std::min(mn, x);
            mx = std::max(mx, x);
        }
        mean /= double(v.size());
        double var = 0;
        for (double x : v) var += (x - mean) * (x - mean);
        double sd = std::sqrt(var / double(v.size()));
        const double tol = 1e-9;
        BOOST_TEST(std::abs(t["mean"].get<double>() - mean) <= tol * (1 + std::abs(mean)), named[i].first);
        BOOST_TEST(std::abs(t["std"].get<double>() - sd) <= tol * (1 + sd), named[i].first);
        BOOST_TEST(t["min"].get<double>() == mn);
        BOOST_TEST(t["max"].get<double>() == mx);
        BOOST_TEST(std::abs(t["l2"].get<double>() - std::sqrt(sq)) <= tol * std::sqrt(sq), named[i].first);
        BOOST_TEST(t["numel"].get<int64_t>() == named[i].second.numel());
    }
    // the table names every tensor too
    std::ostringstream text;
    o.json = false;
    o.out = &text;
    o.optimizer = true;
    BOOST_TEST(tools::run_inspect(o) == 0);
    for (auto& [n, p] : named) {
        BOOST_TEST(text.str().find(n) != std::string::npos, n);
        BOOST_TEST(text.str().find("optimizer/m/" + n) != std::string::npos, n);
    }
    BOOST_TEST(text.str().find("step 1,234") != std::string::npos, text.str());

    // --tensor: the values themselves
    std::ostringstream one;
    o.out = &one;
    o.json = true;
    o.optimizer = false;
    o.tensor = "layers.0.retention.v_proj.weight";
    BOOST_TEST(tools::run_inspect(o) == 0);
    json jt = json::parse(one.str());
    auto want = m.parameter(o.tensor).to_vector<float>();
    BOOST_REQUIRE(jt["values"].size() == want.size());
    for (size_t i = 0; i < want.size(); ++i) BOOST_TEST(jt["values"][i].get<float>() == want[i]);
    BOOST_TEST(!jt["truncated"].get<bool>());
    o.max_values = 5;
    one.str("");
    tools::run_inspect(o);
    BOOST_TEST(json::parse(one.str())["values"].size() == 5u);
    BOOST_TEST(json::parse(one.str())["truncated"].get<bool>());
    std::ostringstream human;
    o.out = &human;
    o.json = false;
    o.tensor = "optimizer/v/embed_tokens.weight";
    BOOST_TEST(tools::run_inspect(o) == 0);
    BOOST_TEST(human.str().find("...") != std::string::npos, human.str());  // 11 rows shown as head ... tail
    o.tensor = "q_proj";
    RN_CHECK_THROWS_WITH(tools::run_inspect(o), "Did you mean: layers.0.retention.q_proj.weight");
}

BOOST_AUTO_TEST_CASE(inspect_diff) {
    TempDir dir;
    RetNetLM m(micro(), 15);
    save_checkpoint(dir / "a.h5", m, nullptr, TrainState{});

    std::ostringstream out;
    tools::InspectOptions o;
    o.path = dir / "a.h5";
    o.diff = dir / "a.h5";
    o.json = true;
    o.out = &out;
    BOOST_TEST(tools::run_inspect(o) == 0);
    json j = json::parse(out.str());
    BOOST_TEST(j["identical"].get<bool>());
    BOOST_TEST(j["tensors"].size() == m.named_parameters().size());
    for (const auto& t : j["tensors"]) {
        BOOST_TEST(t["max_abs_diff"].get<double>() == 0.0);
        BOOST_TEST(t["rel_diff"].get<double>() == 0.0);
    }
    BOOST_TEST(j["missing"].empty());
    BOOST_TEST(j["extra"].empty());

    // a copy with one element changed by 0.5
    const std::string target = "layers.1.ffn.fc2.weight";
    {
        NoGradGuard no_grad;
        Tensor& p = m.parameter(target);
        Tensor e = p.narrow(0, 2, 1).narrow(1, 3, 1);
        copy_nograd(e, e.detach() + 0.5);
    }
    save_checkpoint(dir / "b.h5", m, nullptr, TrainState{});
    o.diff = dir / "b.h5";
    out.str("");
    BOOST_TEST(tools::run_inspect(o) == 1);
    j = json::parse(out.str());
    BOOST_TEST(!j["identical"].get<bool>());
    for (const auto& t : j["tensors"]) {
        if (t["name"] == target) {
            BOOST_TEST(std::abs(t["max_abs_diff"].get<double>() - 0.5) < 1e-6);
            BOOST_TEST(t["rel_diff"].get<double>() > 0.0);
            BOOST_TEST(t["num_different"].get<int64_t>() == 1);
        } else {
            BOOST_TEST(t["max_abs_diff"].get<double>() == 0.0, t["name"].get<std::string>());
        }
    }
    // within a tolerance the two count as equal
    o.tolerance = 0.6;
    out.str("");
    BOOST_TEST(tools::run_inspect(o) == 0);
    o.tolerance = 0;

    // a deeper model: its extra layer is listed, the config key named
    ModelConfig deep = micro();
    deep.n_layers = 3;
    RetNetLM d(deep, 16);
    save_checkpoint(dir / "c.h5", d, nullptr, TrainState{});
    o.diff = dir / "c.h5";
    out.str("");
    BOOST_TEST(tools::run_inspect(o) == 1);
    j = json::parse(out.str());
    auto extra = j["extra"].get<std::vector<std::string>>();
    BOOST_TEST(std::count(extra.begin(), extra.end(), "layers.2.retention.q_proj.weight") == 1);
    BOOST_TEST(j["missing"].empty());
    BOOST_TEST(j["config_differences"].get<std::vector<std::string>>() == std::vector<std::string>{"n_layers"},
               boost::test_tools::per_element());
    // the text form says the same
    o.json = false;
    std::ostringstream text;
    o.out = &text;
    o.diff = dir / "b.h5";
    BOOST_TEST(tools::run_inspect(o) == 1);
    BOOST_TEST(text.str().find(target) != std::string::npos);
    BOOST_TEST(text.str().find("different") != std::string::npos, text.str());
}

// Issue 13 item 6: every value read from a checkpoint is verified. Each scalar (and string,
// and the tokenizer) is changed through HDF5 — which re-checksums its own structures, so
// only retnet's checksums can tell — and each must give a clear error, never a silent load.
BOOST_AUTO_TEST_CASE(every_value_is_covered_by_a_checksum) {
    TempDir dir;
    RetNetLM m(micro(), 30);
    AdamW opt(m.named_parameters(), AdamWOptions{});
    train_step(m, opt, 1);
    save_checkpoint(dir / "good.h5", m, &opt, some_state(), some_tokenizer(), R"({"git":"abc"})");
    const std::string good = read_bytes(dir / "good.h5");
    BOOST_REQUIRE(read_checkpoint(dir / "good.h5").optimizer.step == 1);

    struct Edit {
        const char* what;
        std::function<void(hid_t)> apply;
        const char* needle;
    };
    const char* kSum = "does not match its checksum";
    std::vector<Edit> edits = {
        {"optimizer step", [](hid_t f) { edit_dataset_bytes(f, "optimizer/step", [](std::string& b) { b[0] ^= 0x40; }); }, kSum},
        {"train step", [](hid_t f) { set_num_attr<int64_t>(f, "train_state", "step", H5T_NATIVE_INT64, 1235); }, kSum},
        {"tokens", [](hid_t f) { set_num_attr<int64_t>(f, "train_state", "tokens", H5T_NATIVE_INT64, 7); }, kSum},
        {"rng_seed", [](hid_t f) { set_num_attr<uint64_t>(f, "train_state", "rng_seed", H5T_NATIVE_UINT64, 1); }, kSum},
        {"rng_offset", [](hid_t f) { set_num_attr<uint64_t>(f, "train_state", "rng_offset", H5T_NATIVE_UINT64, 2); }, kSum},
        {"best_val_loss", [](hid_t f) { set_num_attr<double>(f, "train_state", "best_val_loss", H5T_NATIVE_DOUBLE, 1.5); }, kSum},
        {"wall_seconds", [](hid_t f) { set_num_attr<double>(f, "train_state", "wall_seconds", H5T_NATIVE_DOUBLE, 9.0); }, kSum},
        {"data_state", [](hid_t f) { set_string_attr(f, "train_state", "data_state", R"({"shard":4,"offset":4096,"epoch":1})"); }, kSum},
        {"train_state checksum", [](hid_t f) { set_num_attr<uint64_t>(f, "train_state", "fnv1a64", H5T_NATIVE_UINT64, 3); }, kSum},
        {"config", [](hid_t f) { edit_dataset_bytes(f, "config", [](std::string& b) { b[b.find("11")] = '9'; }); }, kSum},
        {"metadata", [](hid_t f) { edit_dataset_bytes(f, "metadata", [](std::string& b) { b[b.find("abc")] = 'x'; }); }, kSum},
        {"optimizer options", [](hid_t f) { edit_dataset_bytes(f, "optimizer/options", [](std::string& b) { b[b.find("0.9")+2] = '8'; }); }, kSum},
        {"tokenizer", [](hid_t f) { edit_dataset_bytes(f, "tokenizer", [](std::string& b) { b[20] ^= 1; }); }, kSum},
        {"format_version", [](hid_t f) { set_num_attr<int64_t>(f, "/", "format_version", H5T_NATIVE_INT64, 7); }, "format_version 7"},
        {"format_revision", [](hid_t f) { set_num_attr<int64_t>(f, "/", "format_revision", H5T_NATIVE_INT64, 0); }, "format_revision is 0"},
        {"a checksum removed", [](hid_t f) { delete_attr(f, "optimizer/step", "fnv1a64"); }, "no fnv1a64 checksum"},
        {"a train_state checksum removed", [](hid_t f) { delete_attr(f, "train_state", "fnv1a64"); }, "no fnv1a64 checksum"},
    };
    for (const auto& e : edits) {
        BOOST_TEST_CONTEXT(e.what) {
            write_bytes(dir / "bad.h5", good);
            edit_h5(dir / "bad.h5", e.apply);
            RN_CHECK_THROWS_WITH(read_checkpoint(dir / "bad.h5"), e.needle);
            RN_CHECK_THROWS_WITH(read_checkpoint(dir / "bad.h5"), "bad.h5");
        }
    }

    // the defect as found: a bit flipped on disk in the optimizer's step count (contiguous
    // raw data, which HDF5 does not checksum) loaded silently. Every bit of it now fails.
    const uint64_t off = raw_offset(dir / "good.h5", "optimizer/step");
    int caught = 0;
    for (int bit = 0; bit < 64; ++bit) {
        std::string bad = good;
        bad[size_t(off) + size_t(bit / 8)] ^= char(1 << (bit % 8));
        write_bytes(dir / "flip.h5", bad);
        try {
            Checkpoint ck = read_checkpoint(dir / "flip.h5");
            BOOST_TEST(ck.optimizer.step == 1, "bit " << bit << " of /optimizer/step loaded as " << ck.optimizer.step);
        } catch (const Error& e) {
            ++caught;
            BOOST_TEST(std::string(e.what()).find("/optimizer/step") != std::string::npos, e.what());
        }
    }
    BOOST_TEST(caught == 64);
}

// Checkpoints written before format_revision 2 (no fnv1a64 on the scalars) still load; their
// values are still range-checked.
BOOST_AUTO_TEST_CASE(older_checkpoints_without_the_new_checksums_still_load) {
    TempDir dir;
    RetNetLM m(micro(), 31);
    AdamW opt(m.named_parameters(), AdamWOptions{});
    train_step(m, opt, 1);
    save_checkpoint(dir / "new.h5", m, &opt, some_state(), some_tokenizer());
    write_bytes(dir / "old.h5", read_bytes(dir / "new.h5"));
    edit_h5(dir / "old.h5", [](hid_t f) {
        delete_attr(f, "/", "format_revision");
        delete_attr(f, "optimizer/step", "fnv1a64");
        delete_attr(f, "train_state", "fnv1a64");
        delete_attr(f, "tokenizer", "fnv1a64");
    });
    Checkpoint ck = read_checkpoint(dir / "old.h5");
    BOOST_TEST(ck.train.step == some_state().step);
    BOOST_TEST(ck.train.rng_seed == some_state().rng_seed);
    BOOST_TEST(ck.optimizer.step == 1);
    BOOST_TEST(ck.tokenizer == some_tokenizer());
    RetNetLM b(micro(), 32);
    load_into(ck, b);
    expect_same_params(m, b);
    // values no run can produce are refused all the same
    auto refused = [&](const char* what, std::function<void(hid_t)> edit, const char* needle) {
        BOOST_TEST_CONTEXT(what) {
            write_bytes(dir / "bad.h5", read_bytes(dir / "old.h5"));
            edit_h5(dir / "bad.h5", edit);
            RN_CHECK_THROWS_WITH(read_checkpoint(dir / "bad.h5"), needle);
        }
    };
    refused("negative step", [](hid_t f) { set_num_attr<int64_t>(f, "train_state", "step", H5T_NATIVE_INT64, -5); },
            "/train_state step is -5");
    refused("NaN loss", [](hid_t f) { set_num_attr<double>(f, "train_state", "best_val_loss", H5T_NATIVE_DOUBLE, std::nan("")); },
            "best_val_loss is nan");
    refused("negative optimizer step",
            [](hid_t f) { edit_dataset_bytes(f, "optimizer/step", [](std::string& b) { b[7] = char(0x80); }); },
            "/optimizer/step is -");
    refused("data_state not JSON", [](hid_t f) { set_string_attr(f, "train_state", "data_state", "{oops"); },
            "data_state is '{oops");
}

// Issue 13 item 12: a config whose sizes do not match the tensors present fails before any
// model is built from it (n_layers = 1e6 used to hang generate for over 30 s).
BOOST_AUTO_TEST_CASE(a_config_that_does_not_fit_its_tensors_fails_fast) {
    TempDir dir;
    RetNetLM m(micro(), 33);
    save_checkpoint(dir / "good.h5", m, nullptr, some_state(), some_tokenizer());
    const json cfg = json::parse(m.config().to_json());
    struct Case {
        const char* field;
        json value;
        const char* needle;
    };
    const std::vector<Case> cases = {
        {"n_layers", 1000000, "n_layers 1000000"},
        {"n_layers", 3, "n_layers 3, but /model holds 2 layers"},
        {"n_layers", 1, "n_layers 1, but /model holds 2 layers"},
        {"d_model", 1 << 20, "'embed_tokens.weight' should be [11, 1048576]"},
        {"vocab_size", 5000000, "'embed_tokens.weight' should be [5000000, 8]"},
        {"ffn_dim", 1 << 22, "ffn_dim 4194304"},
        {"value_dim", 1 << 22, "value_dim 4194304"},
        {"n_heads", 1 << 30, "n_heads 1073741824"},
        {"n_layers", 2.5, "n_layers must be an integer"},
        {"d_model", 1e300, "d_model must be an integer"},
    };
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT(c.field << " = " << c.value.dump()) {
            write_bytes(dir / "crafted.h5", read_bytes(dir / "good.h5"));
            json j = cfg;
            j[c.field] = c.value;
            replace_config(dir / "crafted.h5", j.dump(2));
            const auto t0 = std::chrono::steady_clock::now();
            RN_CHECK_THROWS_WITH(read_checkpoint(dir / "crafted.h5"), c.needle);
            tools::GenerateOptions g;
            g.checkpoint = dir / "crafted.h5";
            g.prompts = {"a"};
            g.max_tokens = 2;
            RN_CHECK_THROWS_WITH(tools::generate(g, nullptr), "crafted.h5");
            const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            BOOST_TEST(s < 1.0, "refusing took " << s << " s");
        }
    }
}

// Issue 13 item 12: a FIFO (or any non-regular file) as a checkpoint is refused at once
// instead of blocking in open() until a writer comes.
BOOST_AUTO_TEST_CASE(a_fifo_is_refused_without_blocking) {
    TempDir dir;
    const std::string fifo = dir / "ckpt.h5";
    BOOST_REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    ::alarm(20);  // the old code blocks forever: let SIGALRM end the test binary instead
    RN_CHECK_THROWS_WITH(read_checkpoint(fifo), "is not a regular file (a FIFO)");
    RN_CHECK_THROWS_WITH(CheckpointReader r(fifo), "not a regular file");
    tools::InspectOptions o;
    o.path = fifo;
    std::ostringstream out;
    o.out = &out;
    RN_CHECK_THROWS_WITH(tools::run_inspect(o), "not a regular file");
    ::alarm(0);
    RN_CHECK_THROWS_WITH(read_checkpoint("/dev/null"), "a character device");
}

// Issue 13 item 13: user-facing messages carry no source location; rn::Error keeps it apart
// (where()) for `retnet --verbose`.
BOOST_AUTO_TEST_CASE(errors_keep_their_source_location_apart) {
    TempDir dir;
    try {
        read_checkpoint(dir / "absent.h5");
        BOOST_FAIL("no error");
    } catch (const Error& e) {
        BOOST_TEST(std::string(e.what()).find(".cpp:") == std::string::npos, e.what());
        BOOST_TEST(e.where().find("nn/checkpoint.cpp:") != std::string::npos, e.where());
    }
    try {
        RN_CHECK(1 + 1 == 3, "arithmetic");
    } catch (const Error& e) {
        BOOST_TEST(std::string(e.what()) == "arithmetic");
        BOOST_TEST(e.where().find("test_checkpoint.cpp:") != std::string::npos, e.where());
    }
}

// Issue 13 item 13: --diff exits 1 when the files differ in anything a run resumes from, 0
// when they are the same, and a bad --tolerance is refused.
BOOST_AUTO_TEST_CASE(inspect_diff_exit_status_covers_the_training_state) {
    TempDir dir;
    RetNetLM m(micro(), 34);
    AdamW opt(m.named_parameters(), AdamWOptions{});
    save_checkpoint(dir / "a.h5", m, &opt, some_state(), some_tokenizer());
    save_checkpoint(dir / "a2.h5", m, &opt, some_state(), some_tokenizer(), R"({"other":"metadata"})");
    TrainState later = some_state();
    later.step += 1;
    save_checkpoint(dir / "step.h5", m, &opt, later, some_tokenizer());
    save_checkpoint(dir / "tok.h5", m, &opt, some_state(), some_tokenizer() + "x");
    save_checkpoint(dir / "noopt.h5", m, nullptr, some_state(), some_tokenizer());
    tools::InspectOptions o;
    std::ostringstream out;
    o.out = &out;
    o.path = dir / "a.h5";
    o.diff = dir / "a2.h5";
    BOOST_TEST(tools::run_inspect(o) == 0);  // metadata alone is not compared
    for (const char* other : {"step.h5", "tok.h5", "noopt.h5"}) {
        BOOST_TEST_CONTEXT(other) {
            o.diff = dir / other;
            out.str("");
            BOOST_TEST(tools::run_inspect(o) == 1);
            BOOST_TEST(out.str().find("state differs in:") != std::string::npos, out.str());
        }
    }
    o.diff = dir / "step.h5";
    o.json = true;
    out.str("");
    BOOST_TEST(tools::run_inspect(o) == 1);
    BOOST_TEST(json::parse(out.str())["state_differences"] == json::array({"step"}));
    for (double bad : {-1.0, std::nan(""), std::numeric_limits<double>::infinity()}) {
        o.tolerance = bad;
        RN_CHECK_THROWS_WITH(tools::run_inspect(o), "--tolerance");
    }
}

// nn::load_model, the one path from a file to a ready model: each arch comes back as its
// own class with the saved model's logits, the caller's check sees the checkpoint before
// the model is built, and a missing, damaged or foreign file is refused naming the file.
BOOST_AUTO_TEST_CASE(load_model_builds_the_saved_model_for_either_arch) {
    TempDir dir;
    ModelConfig transformer;
    transformer.arch = "transformer";
    transformer.vocab_size = 11;
    transformer.d_model = 16;
    transformer.n_heads = 4;
    transformer.n_kv_heads = 2;  // grouped-query: the KV projections' shapes differ from Q's
    transformer.value_dim = 16;
    transformer.ffn_dim = 24;
    transformer.n_layers = 2;
    const std::string meta = R"({"run":"load_model"})";
    auto logits = [](const LanguageModel& m) {
        Generator g(99);
        Tensor tokens = randint(0, m.config().vocab_size, {2, 7}, g);
        NoGradGuard no_grad;
        return m.forward(tokens);
    };
    for (const ModelConfig& cfg : {micro(), transformer}) {
        BOOST_TEST_CONTEXT(cfg.arch) {
            const std::string path = dir / (cfg.arch + ".h5");
            auto saved = make_model(cfg, 41);
            AdamW opt(saved->named_parameters(), AdamWOptions{});
            save_checkpoint(path, *saved, &opt, some_state(), some_tokenizer(), meta);
            // a model of the same config and another seed differs: equal logits below mean loaded
            BOOST_TEST(max_abs_diff(logits(*saved), logits(*make_model(cfg, 42))) > 0);

            int checks = 0;
            LoadModelOptions lo;
            lo.check = [&](const Checkpoint& ck) {
                ++checks;
                BOOST_TEST(ck.config.arch == cfg.arch);
                BOOST_TEST(ck.tokenizer == some_tokenizer());
                BOOST_TEST(!ck.optimizer.present);  // weights only: the moments are never read
                BOOST_TEST(ck.model.at("embed_tokens.weight").data.size() == size_t(cfg.vocab_size * cfg.d_model));
            };
            LoadedModel lm = load_model(path, lo);
            BOOST_TEST(checks == 1);
            BOOST_REQUIRE(lm.model != nullptr);
            BOOST_TEST((dynamic_cast<TransformerLM*>(lm.model.get()) != nullptr) == cfg.is_transformer());
            BOOST_TEST((dynamic_cast<RetNetLM*>(lm.model.get()) != nullptr) == !cfg.is_transformer());
            BOOST_TEST(lm.config.to_json() == cfg.to_json());
            BOOST_TEST(lm.model->config().to_json() == cfg.to_json());
            BOOST_TEST(lm.tokenizer == some_tokenizer());
            BOOST_TEST(json::parse(lm.metadata_json) == json::parse(meta));
            BOOST_TEST(lm.model->num_parameters() == saved->num_parameters());
            BOOST_TEST(max_abs_diff(logits(*saved), logits(*lm.model)) == 0.0);  // bit-identical
            for (auto& [n, p] : lm.model->named_parameters()) {
                BOOST_TEST(p.is_cpu(), n);
                BOOST_TEST(p.dtype() == DType::f32, n);
            }

            // a failing check stops the load with the caller's own message
            lo.check = [](const Checkpoint&) { RN_FAIL("caller: this draft has another tokenizer"); };
            RN_CHECK_THROWS_WITH(load_model(path, lo), "caller: this draft has another tokenizer");

            if (has_gpu()) {  // device and dtype options: moved and cast after loading
                LoadModelOptions g;
                g.device = Device::cuda();
                g.dtype = DType::bf16;
                LoadedModel on_gpu = load_model(path, g);
                for (auto& [n, p] : on_gpu.model->named_parameters()) {
                    BOOST_TEST(p.is_cuda(), n);
                    BOOST_TEST(p.dtype() == DType::bf16, n);
                }
            }
        }
    }

    // the errors read_checkpoint gives, each naming the file
    RN_CHECK_THROWS_WITH(load_model(dir / "absent.h5"), "no such file");
    RN_CHECK_THROWS_WITH(load_model(dir / "absent.h5"), "absent.h5");
    const std::string good = read_bytes(dir / "retnet.h5");
    write_bytes(dir / "truncated.h5", good.substr(0, good.size() / 2));
    RN_CHECK_THROWS_WITH(load_model(dir / "truncated.h5"), "corrupt or truncated");
    RN_CHECK_THROWS_WITH(load_model(dir / "truncated.h5"), "truncated.h5");
    // an arch this build does not know: what was expected and what came, before any model
    write_bytes(dir / "mamba.h5", good);
    json cfg = json::parse(micro().to_json());
    cfg["arch"] = "mamba";
    replace_config(dir / "mamba.h5", cfg.dump());
    bool checked = false;
    LoadModelOptions lo;
    lo.check = [&](const Checkpoint&) { checked = true; };
    RN_CHECK_THROWS_WITH(load_model(dir / "mamba.h5", lo), "arch must be retnet or transformer, got 'mamba'");
    RN_CHECK_THROWS_WITH(load_model(dir / "mamba.h5", lo), "mamba.h5");
    BOOST_TEST(!checked);
}

BOOST_AUTO_TEST_CASE(cuda_parameters_round_trip, *boost::unit_test::precondition([](boost::unit_test::test_unit_id) {
                         return boost::unit_test::assertion_result(has_gpu());
                     })) {
    // parameters on the GPU: copied to the CPU for writing, back to the GPU when loading
    TempDir dir;
    RetNetLM a(micro(), 17);
    a.to(Device::cuda());
    AdamW opt_a(a.named_parameters(), AdamWOptions{});
    train_step(a, opt_a, 1);
    save_checkpoint(dir / "gpu.h5", a, &opt_a, some_state());
    RetNetLM b(micro(), 18);
    b.to(Device::cuda());
    AdamW opt_b(b.named_parameters(), AdamWOptions{});
    load_into(read_checkpoint(dir / "gpu.h5"), b, &opt_b);
    BOOST_TEST(b.parameter("embed_tokens.weight").is_cuda());
    expect_same_params(a, b);
    train_step(a, opt_a, 2);
    train_step(b, opt_b, 2);
    expect_same_params(a, b);
    RetNetLM c(micro(), 19);  // and into a CPU model
    load_into(read_checkpoint(dir / "gpu.h5"), c);
    BOOST_TEST(c.parameter("embed_tokens.weight").is_cpu());
    BOOST_TEST(c.parameter("layer_norm.weight").to_vector<float>() == a.parameter("layer_norm.weight").to_vector<float>(),
               boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()
