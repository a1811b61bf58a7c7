// tests/test_safetensors.cpp — the safetensors reader and writer (nn/safetensors.h): random
// tensors of every dtype round trip bit for bit; the format's own example file reads;
// every rule of the strict reader, broken by a crafted file, gives its error naming the
// tensor; f16 converts exactly (all 65536 bit patterns, subnormals, inf and NaN included);
// non-regular files are refused without blocking; a failed write leaves no file. And
// tools/convert.h in process: a tied-embedding, emb-norm model round trips h5 → safetensors
// → h5 bit for bit with its config and tokenizer, through our names and torchscale's;
// files and configs that do not fit are refused naming what is wrong.
#include <boost/test/unit_test.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <cstring>
#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>

#include "core/random.h"
#include "nn/checkpoint.h"
#include "nn/retnet.h"
#include "nn/safetensors.h"
#include "tools/convert.h"

using namespace rn;
using namespace rn::nn;
namespace fs = std::filesystem;

namespace {

struct TmpDir {
    fs::path path;
    TmpDir() {
        static int n = 0;
        path = fs::temp_directory_path() / ("rn_st_test_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
        fs::create_directories(path);
    }
    ~TmpDir() { fs::remove_all(path); }
    std::string file(const std::string& name) const { return (path / name).string(); }
};

std::string le64(uint64_t v) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[i] = char(uint8_t(v >> (8 * i)));
    return s;
}
// a file from a header text and a data section
std::string make_file(const std::string& header, const std::string& data) { return le64(header.size()) + header + data; }

std::string bits_of(const Tensor& t) {
    return std::string(static_cast<const char*>(t.contiguous().raw_data()), t.nbytes());
}

// the message of the error that reading `bytes` gives ("" when it reads)
std::string error_of(const std::string& bytes) {
    try {
        SafetensorsReader::from_bytes(bytes, "crafted");
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

void expect_error(const std::string& bytes, const std::vector<std::string>& parts) {
    const std::string msg = error_of(bytes);
    BOOST_TEST_INFO("error: " << msg);
    BOOST_TEST(!msg.empty());
    for (const std::string& p : parts) {
        BOOST_TEST_INFO("expected '" << p << "' in: " << msg);
        BOOST_TEST(msg.find(p) != std::string::npos);
    }
}

}  // namespace

BOOST_AUTO_TEST_CASE(round_trip_tensors_bit_exact) {
    TmpDir dir;
    Generator g(7);
    std::vector<std::pair<std::string, Tensor>> f32 = {
        {"layers.0.retention.q_proj.weight", randn({5, 7}, g)},
        {"embed_tokens.weight", randn({3, 4}, g)},
        {"scalar", randn({}, g)},
        {"empty", randn({0, 3}, g)},
    };
    const std::string path = dir.file("a.safetensors");
    write_safetensors(path, f32, "F32", {{"format", "pt"}, {"note", "x"}});
    SafetensorsReader r(path);
    BOOST_TEST(r.entries().size() == 4u);
    BOOST_TEST(r.metadata().at("format") == "pt");
    for (size_t i = 0; i < f32.size(); ++i) {
        BOOST_TEST(r.entries()[i].name == f32[i].first);  // written order is kept
        Tensor back = r.read(f32[i].first, DType::f32);
        BOOST_TEST((back.shape() == f32[i].second.shape()));
        BOOST_TEST((bits_of(back) == bits_of(f32[i].second)));
    }
    // bf16 and f64 tensors through their own dtypes
    Tensor b = randn({4, 9}, g).to(DType::bf16);
    Tensor d = randn({6}, g, DType::f64);
    write_safetensors(dir.file("b.safetensors"), {{"b", b}}, "BF16");
    write_safetensors(dir.file("d.safetensors"), {{"d", d}}, "F64");
    BOOST_TEST((bits_of(SafetensorsReader(dir.file("b.safetensors")).read("b", DType::bf16)) == bits_of(b)));
    BOOST_TEST((bits_of(SafetensorsReader(dir.file("d.safetensors")).read("d", DType::f64)) == bits_of(d)));
    // f32 written as BF16 rounds to nearest even, the same as our own cast
    Tensor x = randn({33}, g);
    write_safetensors(dir.file("x.safetensors"), {{"x", x}}, "BF16");
    BOOST_TEST((bits_of(SafetensorsReader(dir.file("x.safetensors")).read("x", DType::bf16)) == bits_of(x.to(DType::bf16))));
}

BOOST_AUTO_TEST_CASE(round_trip_raw_every_dtype) {
    TmpDir dir;
    const std::vector<std::string> dtypes = {"F64", "F32", "F16", "BF16", "F8_E5M2", "F8_E4M3", "I64", "I32",
                                             "I16", "I8",  "U64", "U32", "U16", "U8",   "BOOL"};
    std::vector<SafetensorsOut> outs;
    std::vector<std::string> raws;
    uint32_t seed = 12345;
    for (size_t i = 0; i < dtypes.size(); ++i) {
        const Shape shape = {int64_t(i % 3 + 1), 5};
        std::string raw(size_t(shape[0] * shape[1]) * safetensors_dtype_size(dtypes[i]), '\0');
        for (char& c : raw) c = char((seed = seed * 1664525u + 1013904223u) >> 24);
        raws.push_back(raw);
        outs.push_back({"t" + std::to_string(i), dtypes[i], shape, [raw](std::string& buf) { buf = raw; }});
    }
    write_safetensors(dir.file("all.safetensors"), outs);
    SafetensorsReader r(dir.file("all.safetensors"));
    BOOST_TEST(r.metadata().empty());
    for (size_t i = 0; i < dtypes.size(); ++i) {
        BOOST_TEST(r.entry(outs[i].name).dtype == dtypes[i]);
        BOOST_TEST((r.entry(outs[i].name).shape == outs[i].shape));
        BOOST_TEST((r.read_raw(outs[i].name) == raws[i]));
    }
    // the header is padded so the data starts 8-aligned, as the reference writes it
    std::ifstream in(dir.file("all.safetensors"), std::ios::binary);
    unsigned char len[8];
    in.read(reinterpret_cast<char*>(len), 8);
    BOOST_TEST(len[0] % 8 == 0);
    // an integer tensor is not a model parameter
    BOOST_CHECK_EXCEPTION(r.read("t6", DType::f32), Error, [](const Error& e) {
        return std::string(e.what()).find("tensor 't6' is I64; only F32, F64, BF16 and F16 convert") != std::string::npos;
    });
}

BOOST_AUTO_TEST_CASE(reads_the_format_example) {
    // the example of the format's documentation, byte for byte: a 2×2 I32 tensor of zeros
    const std::string header = R"({"test":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]}})";
    BOOST_REQUIRE(header.size() == 60u);  // the '<' (0x3c) of the example's first byte
    const std::string bytes = std::string("<\0\0\0\0\0\0\0", 8) + header + std::string(16, '\0');
    SafetensorsReader r = SafetensorsReader::from_bytes(bytes);
    BOOST_TEST(r.entries().size() == 1u);
    BOOST_TEST((r.entry("test").shape == Shape{2, 2}));
    BOOST_TEST(r.read_raw("test") == std::string(16, '\0'));
    // a hand-made float file: F32, BF16 and F16 of known values, converted on reading
    const std::string h2 =
        R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
        R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]},"c":{"dtype":"F16","shape":[3],"data_offsets":[12,18]}})";
    const std::string data = std::string("\x00\x00\x80\x3f\x00\x00\x00\xc0", 8)  // 1.0f, -2.0f
                             + std::string("\xc0\x3f\x80\xbf", 4)                  // bf16 1.5, -1.0
                             + std::string("\x00\x3c\x01\x00\xff\x7b", 6);         // f16 1, 2^-24, 65504
    SafetensorsReader r2 = SafetensorsReader::from_bytes(make_file(h2, data));
    BOOST_TEST((r2.read("a").to_vector<float>() == std::vector<float>{1.0f, -2.0f}));
    BOOST_TEST((r2.read("b").to_vector<float>() == std::vector<float>{1.5f, -1.0f}));
    BOOST_TEST((r2.read("c", DType::f64).to_vector<double>() == std::vector<double>{1.0, std::ldexp(1.0, -24), 65504.0}));
    BOOST_TEST(r2.metadata().at("format") == "pt");
}

BOOST_AUTO_TEST_CASE(f16_conversion_is_exact) {
    // every bit pattern against the definition: (−1)^s · 2^(e−15) · (1 + m/1024), subnormals m · 2^−24
    for (uint32_t h = 0; h < 65536; ++h) {
        const uint32_t e = (h >> 10) & 31, m = h & 1023;
        const float got = f16_to_f32(uint16_t(h));
        const bool neg = h & 0x8000;
        if (e == 31) {
            if (m == 0) BOOST_REQUIRE(got == (neg ? -INFINITY : INFINITY));
            else BOOST_REQUIRE(std::isnan(got));
            continue;
        }
        double want = e == 0 ? std::ldexp(double(m), -24) : std::ldexp(1.0 + m / 1024.0, int(e) - 15);
        if (neg) want = -want;
        BOOST_REQUIRE(double(got) == want);
        BOOST_REQUIRE(std::signbit(got) == neg);  // −0 stays −0
    }
    BOOST_TEST(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
    BOOST_TEST(f16_to_f32(0x03ff) == std::ldexp(1023.0f, -24));  // largest subnormal
    BOOST_TEST(f16_to_f32(0x7bff) == 65504.0f);
    // NaN keeps its payload and sign
    uint32_t bits;
    float nan = f16_to_f32(0xfe01);
    std::memcpy(&bits, &nan, 4);
    BOOST_TEST(bits == (0xff800000u | (0x201u << 13)));
}

BOOST_AUTO_TEST_CASE(every_violation_is_a_clear_error) {
    auto tensor = [](const std::string& name, const std::string& dtype, const std::string& shape, const std::string& off) {
        return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":" + off + "}";
    };
    const std::string d8(8, '\x01');
    expect_error(std::string("\x05\0\0", 3), {"3 bytes, shorter than the 8-byte header length"});
    expect_error(le64(200ull << 20) + "{}", {"header length is 209715200 bytes, more than the limit"});
    expect_error(le64(50) + "{}", {"header length is 50 bytes, but only 2 bytes follow it"});
    expect_error(make_file("", ""), {"must be a JSON object starting with '{'"});
    expect_error(make_file("[1]", ""), {"must be a JSON object starting with '{'"});
    expect_error(make_file("{\"a\":", ""), {"the header is not valid JSON"});
    expect_error(make_file("{\"a\":" + std::string(100, '[') + std::string(100, ']') + "}", ""), {"nests deeper than 64"});
    expect_error(make_file("{" + tensor("w", "F33", "[2]", "[0,8]") + "}", d8), {"tensor 'w'", "unknown dtype 'F33'"});
    expect_error(make_file("{" + tensor("w", "F32", "[-2]", "[0,8]") + "}", d8), {"tensor 'w'", "holds -2, expected integers >= 0"});
    expect_error(make_file("{" + tensor("w", "F32", "[2.0]", "[0,8]") + "}", d8), {"tensor 'w'", "expected integers >= 0"});
    expect_error(make_file("{" + tensor("w", "F32", "2", "[0,8]") + "}", d8), {"tensor 'w'", "shape must be an array"});
    expect_error(make_file("{" + tensor("w", "F32", "[4294967296,4294967296]", "[0,8]") + "}", d8),
                 {"tensor 'w'", "more elements than 2^64"});
    expect_error(make_file("{" + tensor("w", "F32", "[4611686018427387904]", "[0,8]") + "}", d8),
                 {"tensor 'w'", "more than 2^64 bytes"});
    expect_error(make_file("{" + tensor("w", "F32", "[2]", "[0]") + "}", d8), {"tensor 'w'", "data_offsets must be [begin, end]"});
    expect_error(make_file("{" + tensor("w", "F32", "[2]", "[0,-8]") + "}", d8), {"data_offsets must be [begin, end]"});
    expect_error(make_file("{" + tensor("w", "F32", "[2]", "[8,0]") + "}", d8), {"tensor 'w'", "end before they begin"});
    expect_error(make_file("{" + tensor("w", "F32", "[4]", "[0,16]") + "}", d8),
                 {"tensor 'w'", "end at byte 16, past the data section's 8 bytes"});
    expect_error(make_file("{" + tensor("w", "F32", "[3]", "[0,8]") + "}", d8),
                 {"tensor 'w'", "shape [3] of F32 needs 12 bytes, but data_offsets [0, 8] hold 8"});
    expect_error(make_file("{" + tensor("a", "F32", "[2]", "[0,8]") + "," + tensor("b", "F32", "[1]", "[4,8]") + "}", d8),
                 {"tensor 'b'", "overlap tensor 'a' [0, 8]"});
    expect_error(make_file("{" + tensor("a", "F32", "[1]", "[0,4]") + "," + tensor("b", "U8", "[2]", "[6,8]") + "}", d8),
                 {"tensor 'b'", "begin at byte 6, expected 4", "without gaps"});
    expect_error(make_file("{" + tensor("a", "F32", "[1]", "[0,4]") + "}", d8), {"cover 4 bytes of the data section, but it holds 8"});
    expect_error(make_file("{" + tensor("a", "F32", "[1]", "[0,4]") + "," + tensor("a", "F32", "[1]", "[4,8]") + "}", d8),
                 {"names 'a' twice"});
    expect_error(make_file("{\"__metadata__\":{\"k\":1}}", ""), {"__metadata__ 'k' must be a string, got 1"});
    expect_error(make_file("{\"__metadata__\":[]}", ""), {"__metadata__ must be an object"});
    expect_error(make_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", d8),
                 {"tensor 'w'", "unexpected field 'x'"});
    expect_error(make_file("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", d8), {"tensor 'w'", "missing shape"});
    expect_error(make_file("{\"w\":[1]}", d8), {"tensor 'w'", "expected an object"});
    // the same bytes made valid read fine (so each case above fails for its own reason)
    BOOST_TEST(error_of(make_file("{" + tensor("a", "F32", "[1]", "[0,4]") + "," + tensor("b", "U8", "[4]", "[4,8]") + "}", d8)) ==
               "");
    // a shape that is valid in the file but too large for a tensor (zero elements)
    SafetensorsReader z = SafetensorsReader::from_bytes(make_file("{" + tensor("z", "F32", "[0,4294967296,4294967296]", "[0,0]") + "}", ""));
    BOOST_CHECK_EXCEPTION(z.read("z"), Error, [](const Error& e) {
        return std::string(e.what()).find("too large for a tensor") != std::string::npos;
    });
    BOOST_CHECK_EXCEPTION(z.entry("nope"), Error, [](const Error& e) {
        return std::string(e.what()).find("no tensor 'nope'") != std::string::npos;
    });
}

BOOST_AUTO_TEST_CASE(refuses_non_regular_files_and_keeps_files_on_failed_writes) {
    TmpDir dir;
    const std::string fifo = dir.file("pipe.safetensors");
    BOOST_REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    BOOST_CHECK_EXCEPTION(SafetensorsReader{fifo}, Error, [](const Error& e) {
        return std::string(e.what()).find("is not a regular file") != std::string::npos;
    });
    BOOST_CHECK_EXCEPTION(SafetensorsReader{dir.path.string()}, Error, [](const Error& e) {
        return std::string(e.what()).find("is a directory") != std::string::npos;
    });
    BOOST_CHECK_EXCEPTION(SafetensorsReader{dir.file("missing")}, Error, [](const Error& e) {
        return std::string(e.what()).find("no such file") != std::string::npos;
    });
    // a fill of the wrong size: an error, the old file unchanged, no temporary left
    const std::string path = dir.file("keep.safetensors");
    write_safetensors(path, {{"a", randn({2})}});
    const auto before = fs::file_size(path);
    std::vector<SafetensorsOut> bad = {{"a", "F32", {3}, [](std::string& b) { b = std::string(8, 'x'); }}};
    BOOST_CHECK_EXCEPTION(write_safetensors(path, bad), Error, [](const Error& e) {
        return std::string(e.what()).find("tensor 'a' [3] of F32 should be 12 bytes, got 8") != std::string::npos;
    });
    BOOST_TEST(fs::file_size(path) == before);
    int files = 0;
    for (auto& p : fs::directory_iterator(dir.path)) files += p.path().filename() != "pipe.safetensors";
    BOOST_TEST(files == 1);
    std::vector<SafetensorsOut> dup = {{"a", "F32", {0}, [](std::string&) {}}, {"a", "F32", {0}, [](std::string&) {}}};
    BOOST_CHECK_THROW(write_safetensors(path, dup), Error);
}

namespace {
ModelConfig odd_config() {
    ModelConfig c;
    c.preset = "odd";
    c.vocab_size = 37;
    c.d_model = 16;
    c.n_layers = 2;
    c.n_heads = 2;
    c.value_dim = 24;
    c.ffn_dim = 20;
    c.emb_norm = true;
    c.tie_embeddings = true;
    c.activation = "gelu";
    c.norm_eps = 1e-5;
    return c;
}
std::string run_convert_quiet(tools::ConvertOptions o) {
    std::ostringstream log;
    o.log = &log;
    tools::run_convert(o);
    return log.str();
}
}  // namespace

BOOST_AUTO_TEST_CASE(convert_round_trip_bit_exact) {
    TmpDir dir;
    RetNetLM model(odd_config(), 5);
    const std::string tok = std::string("\x00tokenizer bytes\xff", 17);
    const std::string ckpt = dir.file("m.h5");
    save_checkpoint(ckpt, model, nullptr, TrainState{}, tok);
    for (const std::string to : {"retnet", "torchscale"}) {
        fs::create_directories(dir.path / to);
        const std::string st = dir.file(to + "/model.safetensors"), back = dir.file(to + ".h5");
        tools::ConvertOptions o;
        o.in = ckpt;
        o.out = st;
        o.to = to;
        const std::string log = run_convert_quiet(o);
        SafetensorsReader r(st);
        BOOST_TEST(r.metadata().at("format") == "pt");
        // torchscale's state_dict: the tied projection as its own name, the rel-pos buffers
        BOOST_TEST(r.has("output_projection.weight") == (to == "torchscale"));
        BOOST_TEST(r.has("retnet_rel_pos.decay") == (to == "torchscale"));
        if (to == "torchscale") {
            BOOST_TEST((r.read_raw("output_projection.weight") == r.read_raw("embed_tokens.weight")));
            const auto decay = r.read("retnet_rel_pos.decay").to_vector<float>();
            BOOST_TEST(decay[1] == std::log(1.0f - 1.0f / 64.0f));  // log(1 − 2^(−5−h)) at h = 1
            BOOST_TEST(r.entry("retnet_rel_pos.angle").shape == Shape{8});  // Dk = 16 / 2
        }
        tools::ConvertOptions b;
        b.in = st;
        b.out = back;
        run_convert_quiet(b);
        Checkpoint a = read_checkpoint(ckpt), c = read_checkpoint(back);
        BOOST_TEST(c.config.to_json() == a.config.to_json());
        BOOST_TEST(c.tokenizer == tok);
        BOOST_TEST(c.names == a.names);
        for (const auto& n : a.names) {
            BOOST_TEST_INFO(to << ": " << n);
            BOOST_TEST((std::memcmp(a.model.at(n).data.data(), c.model.at(n).data.data(), a.model.at(n).data.size() * 4) == 0));
        }
    }
    // BF16 export: rounded as our cast rounds, and said so
    tools::ConvertOptions o;
    o.in = ckpt;
    o.out = dir.file("retnet/bf16.safetensors");
    o.dtype = "BF16";
    o.force = true;  // config.json and tokenizer.model beside it exist
    BOOST_TEST(run_convert_quiet(o).find("not bit-exact") != std::string::npos);
    SafetensorsReader r(o.out);
    Tensor e = read_checkpoint(ckpt).model.at("embed_tokens.weight").to_tensor();
    BOOST_TEST((bits_of(r.read("embed_tokens.weight", DType::bf16)) == bits_of(e.to(DType::bf16))));
}

BOOST_AUTO_TEST_CASE(convert_refuses_what_does_not_fit) {
    TmpDir dir;
    ModelConfig cfg = odd_config();
    RetNetLM model(cfg, 1);
    const std::string ckpt = dir.file("m.h5");
    save_checkpoint(ckpt, model, nullptr, TrainState{});
    auto expect = [](tools::ConvertOptions o, const std::string& part) {
        std::ostringstream log;
        o.log = &log;
        try {
            tools::run_convert(o);
            BOOST_ERROR("no error, expected: " << part);
        } catch (const Error& e) {
            BOOST_TEST_INFO(e.what());
            BOOST_TEST(std::string(e.what()).find(part) != std::string::npos);
        }
    };
    tools::ConvertOptions o;
    o.in = ckpt;
    o.out = dir.file("x.safetensors");
    o.to = "retnet";
    o.dtype = "F16";
    expect(o, "--dtype 'F16': expected F32, BF16 or F64");
    BOOST_TEST(!fs::exists(o.out));
    // the paper decay has no torchscale counterpart
    ModelConfig paper = cfg;
    paper.decay = "paper";
    BOOST_CHECK_EXCEPTION(tools::config_to_torchscale_json(paper), Error, [](const Error& e) {
        return std::string(e.what()).find("torchscale's RetNetRelPos computes only") != std::string::npos;
    });
    BOOST_CHECK_EXCEPTION(tools::config_from_torchscale_json(R"({"decoder_embed_dim":16,"deepnorm":true})"), Error,
                          [](const Error& e) { return std::string(e.what()).find("deepnorm = true is not supported") != std::string::npos; });
    BOOST_CHECK_EXCEPTION(tools::config_from_torchscale_json(R"({"decoder_embed_dim":"16"})"), Error,
                          [](const Error& e) { return std::string(e.what()).find("'decoder_embed_dim' must be an integer") != std::string::npos; });
    BOOST_CHECK_EXCEPTION(tools::config_from_torchscale_json(R"({"decoder_embed_dim":16,"decoder_value_embed_dim":24,
        "decoder_retention_heads":2,"decoder_ffn_embed_dim":20,"decoder_layers":1,"vocab_size":9,"layernorm_eps":"x"})"),
                          Error, [](const Error& e) { return std::string(e.what()).find("wrong type") != std::string::npos; });
    // a file with an extra tensor, and one with a wrong shape: refused, no output
    auto params = model.named_parameters();
    params.push_back({"layers.9.extra.weight", randn({2})});
    const std::string extra = dir.file("extra.safetensors");
    write_safetensors(extra, params, "F32", {{"retnet.config", cfg.to_json()}});
    tools::ConvertOptions b;
    b.in = extra;
    b.out = dir.file("extra.h5");
    expect(b, "'layers.9.extra.weight' is not a parameter of this model");
    params.pop_back();
    params[1].second = randn({3, 3});
    write_safetensors(extra, params, "F32", {{"retnet.config", cfg.to_json()}});
    expect(b, "has shape [3, 3], the config needs");
    params.pop_back();
    write_safetensors(dir.file("noconf.safetensors"), params);
    b.in = dir.file("noconf.safetensors");
    expect(b, "expected '" + dir.path.string() + "/config.json' beside it");
    BOOST_TEST(!fs::exists(b.out));
}
