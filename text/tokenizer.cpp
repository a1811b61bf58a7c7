// text/tokenizer.cpp — the SentencePiece wrapper: training options that make training
// deterministic and decoding exact, loading from a file or from bytes, and SentencePiece
// statuses turned into rn::Error messages that say what to do.
#include "text/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "core/error.h"
#include "core/text_file.h"

namespace fs = std::filesystem;

namespace rn::tools {

namespace {

// SentencePiece drops sentences longer than max_sentence_length; we cut long lines into
// pieces of at most this many bytes instead, so no text is silently lost.
constexpr size_t kMaxSentenceBytes = 16384;

// Feeds a vector of sentences to the SentencePiece trainer.
class VectorIterator : public sentencepiece::SentenceIterator {
public:
    explicit VectorIterator(const std::vector<std::string>& v) : v_(v) {}
    bool done() const override { return i_ >= v_.size(); }
    void Next() override { ++i_; }
    const std::string& value() const override { return v_[i_]; }
    sentencepiece::util::Status status() const override { return {}; }

private:
    const std::vector<std::string>& v_;
    size_t i_ = 0;
};

// Removes every kDocSeparator from a line (training never sees the marker).
void strip_separators(std::string& line) {
    const std::string sep = kDocSeparator;
    for (size_t pos; (pos = line.find(sep)) != std::string::npos;) line.erase(pos, sep.size());
}

// Appends `line` to `out`, cut into pieces of at most kMaxSentenceBytes: at the last space
// of the piece when there is one, else at a UTF-8 character boundary.
void push_cut(std::vector<std::string>& out, const std::string& line) {
    size_t start = 0;
    while (line.size() - start > kMaxSentenceBytes) {
        size_t end = start + kMaxSentenceBytes;
        size_t space = line.rfind(' ', end - 1);
        if (space != std::string::npos && space > start) {
            end = space + 1;
        } else {
            while (end > start + 1 && (static_cast<unsigned char>(line[end]) & 0xC0) == 0x80) --end;
        }
        out.push_back(line.substr(start, end - start));
        start = end;
    }
    if (start < line.size()) out.push_back(line.substr(start));
}

// Calls fn(line) for every non-empty line of every file, separators stripped.
template <typename Fn>
void for_each_line(const std::vector<std::string>& files, Fn&& fn) {
    for (const auto& path : files) {
        std::ifstream in(path, std::ios::binary);
        RN_CHECK(in, "tokenizer: cannot open training file '", path, "'");
        std::string line;
        while (std::getline(in, line)) {
            strip_separators(line);
            if (!line.empty()) fn(line);
        }
        RN_CHECK(in.eof(), "tokenizer: error reading '", path, "'");
    }
}

}  // namespace

Tokenizer::Tokenizer() : sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_bytes(const std::string& bytes, const std::string& origin) {
    RN_CHECK(!bytes.empty(), "tokenizer: ", origin, " is empty, expected a SentencePiece model");
    Tokenizer t;
    auto st = t.sp_->LoadFromSerializedProto(bytes);
    RN_CHECK(st.ok(), "tokenizer: ", origin, " (", bytes.size(),
             " bytes) is not a valid SentencePiece model (corrupt?): ", st.ToString());
    // a protobuf parser accepts some garbage as an almost empty message; a real model has
    // pieces and the special ids we rely on
    RN_CHECK(t.sp_->GetPieceSize() > 0 && t.sp_->bos_id() >= 0, "tokenizer: ", origin,
             " holds no vocabulary or no BOS piece (corrupt model?)");
    t.serialized_ = bytes;
    return t;
}

Tokenizer Tokenizer::from_serialized(const std::string& bytes) {
    return from_bytes(bytes, "the serialized model");
}

Tokenizer Tokenizer::load(const std::string& path) {
    std::error_code ec;
    RN_CHECK(fs::is_regular_file(path, ec), "tokenizer: model file '", path, "' does not exist",
             "\nHINT: run `retnet prepare` to train one, or pass the tokenizer.model it wrote");
    std::ifstream in(path, std::ios::binary);
    RN_CHECK(in, "tokenizer: cannot open model file '", path, "'");
    std::ostringstream ss;
    ss << in.rdbuf();
    return from_bytes(ss.str(), "model file '" + path + "'");
}

Tokenizer Tokenizer::train_from_sentences(const std::vector<std::string>& sentences,
                                          const TokenizerTrainOptions& opts) {
    RN_CHECK(!sentences.empty(), "tokenizer: no text to train on");
    RN_CHECK(opts.vocab_size > 0, "tokenizer: vocab_size must be positive, got ", opts.vocab_size);
    std::vector<std::string> cut;
    cut.reserve(sentences.size());
    for (const auto& s : sentences) {
        if (!s.empty()) push_cut(cut, s);
    }
    RN_CHECK(!cut.empty(), "tokenizer: no text to train on (all sentences empty)");

    // Every option that affects the result is spelled out, so a SentencePiece default
    // changing between versions cannot change our models silently.
    std::unordered_map<std::string, std::string> kw = {
        {"model_type", "bpe"},
        {"vocab_size", std::to_string(opts.vocab_size)},
        {"byte_fallback", "true"},
        {"character_coverage", std::to_string(opts.character_coverage)},
        {"normalization_rule_name", "identity"},
        {"remove_extra_whitespaces", "false"},
        {"add_dummy_prefix", "false"},
        {"split_digits", "false"},
        {"input_sentence_size", "0"},         // use every sentence we pass ...
        {"shuffle_input_sentence", "false"},  // ... in our order
        {"max_sentence_length", std::to_string(kMaxSentenceBytes)},
        {"num_threads", "1"},  // fixed: the thread count is recorded in the model bytes
        {"unk_id", "0"},
        {"bos_id", "1"},
        {"eos_id", "2"},
        {"pad_id", "3"},
        {"hard_vocab_limit", "false"},  // a tiny corpus gives a smaller vocabulary, not an error
        {"minloglevel", "2"},           // SentencePiece logs every step otherwise
    };
    VectorIterator it(cut);
    std::string model;
    auto st = sentencepiece::SentencePieceTrainer::Train(kw, &it, &model);
    if (!st.ok()) {
        std::string msg = st.ToString();
        if (msg.find("smaller than required_chars") != std::string::npos) {
            RN_FAIL("tokenizer: training failed: ", msg,
                    "\nHINT: vocab_size must exceed 260 (4 special + 256 byte pieces) plus the "
                    "number of distinct characters kept; increase it");
        }
        RN_FAIL("tokenizer: training failed: ", msg);
    }
    return from_serialized(model);
}

Tokenizer Tokenizer::train(const std::vector<std::string>& files, const TokenizerTrainOptions& opts) {
    RN_CHECK(!files.empty(), "tokenizer: no training files given");
    RN_CHECK(opts.max_train_bytes > 0, "tokenizer: max_train_bytes must be positive");
    // pass 1: how much text is there? pass 2: keep every k-th line so that at most
    // max_train_bytes reach the trainer — deterministic, and spread over the whole corpus
    int64_t total = 0;
    for_each_line(files, [&](const std::string& l) { total += int64_t(l.size()); });
    RN_CHECK(total > 0, "tokenizer: the training files hold no text (", files.size(), " files, first '",
             files.front(), "')");
    const int64_t stride = (total + opts.max_train_bytes - 1) / opts.max_train_bytes;
    std::vector<std::string> lines;
    int64_t n = 0;
    for_each_line(files, [&](const std::string& l) {
        if (n++ % stride == 0) lines.push_back(l);
    });
    return train_from_sentences(lines, opts);
}

std::vector<int32_t> Tokenizer::encode(const std::string& text) const {
    std::vector<int> ids;
    auto st = sp_->Encode(text, &ids);
    RN_CHECK(st.ok(), "tokenizer: encode failed: ", st.ToString());
    return std::vector<int32_t>(ids.begin(), ids.end());
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
    const int32_t n = vocab_size();
    for (size_t i = 0; i < ids.size(); ++i) {
        RN_CHECK(ids[i] >= 0 && ids[i] < n, "tokenizer: decode: id ", ids[i], " at position ", i,
                 " is outside the vocabulary [0, ", n, ")");
    }
    std::string out;
    auto st = sp_->Decode(std::vector<int>(ids.begin(), ids.end()), &out);
    RN_CHECK(st.ok(), "tokenizer: decode failed: ", st.ToString());
    return out;
}

std::string Tokenizer::id_to_piece(int32_t id) const {
    RN_CHECK(id >= 0 && id < vocab_size(), "tokenizer: id ", id, " is outside the vocabulary [0, ",
             vocab_size(), ")");
    return sp_->IdToPiece(id);
}

int Tokenizer::byte_value(int32_t id) const {
    if (id < 0 || id >= vocab_size() || !sp_->IsByte(id)) return -1;
    const std::string piece = sp_->IdToPiece(id);  // "<0xHH>"
    RN_CHECK(piece.size() == 6 && piece.compare(0, 3, "<0x") == 0 && piece[5] == '>',
             "tokenizer: byte piece ", id, " is '", piece, "', expected <0xHH>");
    return int(std::stoul(piece.substr(3, 2), nullptr, 16));
}

int32_t Tokenizer::vocab_size() const { return sp_->GetPieceSize(); }
int32_t Tokenizer::bos_id() const { return sp_->bos_id(); }
int32_t Tokenizer::eos_id() const { return sp_->eos_id(); }
int32_t Tokenizer::pad_id() const { return sp_->pad_id(); }
int32_t Tokenizer::unk_id() const { return sp_->unk_id(); }

void write_documents(const std::string& path, const std::vector<std::string>& docs, const std::string& what) {
    write_file_atomic(
        path,
        [&](std::ostream& out) {
            bool first = true;
            for (const auto& d : docs) {
                if (!first) out << kDocSeparator << '\n';
                first = false;
                out << d;
                if (d.empty() || d.back() != '\n') out << '\n';
            }
        },
        what);
}

void Tokenizer::save(const std::string& path) const {
    write_file_atomic(
        path, [&](std::ostream& out) { out.write(serialized_.data(), std::streamsize(serialized_.size())); },
        "tokenizer");
}

}  // namespace rn::tools
