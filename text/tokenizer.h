// text/tokenizer.h — rn::tools::Tokenizer: a BPE tokenizer (SentencePiece) that `retnet
// prepare` trains on the corpus, the trainer stores inside its checkpoint, and `generate`
// and `serve` use to turn text into ids and back.
//
// Choices, and why:
// - BPE with byte_fallback: a character the model never saw still becomes tokens (its
//   UTF-8 bytes, <0x..> pieces), so encode → decode reproduces any valid UTF-8 text —
//   with one exception, SentencePiece's own: U+2581 (▁, its internal mark for a space)
//   in the input decodes as a space (found by fuzz/fuzz_prepare.cpp).
// - identity normalisation, no extra-whitespace removal, no dummy prefix: decode(encode(s))
//   == s byte for byte (spaces, tabs, newlines kept). Without a dummy prefix a word at the
//   start of a line is tokenised the same in training (which sees lines) and in encoding
//   (which sees whole documents with '\n' inside).
// - deterministic training: every sentence is used in file order (no sampling by
//   SentencePiece, no shuffle), one fixed thread count; when the corpus is larger than
//   the training budget we keep every k-th line ourselves. Same corpus and same
//   SentencePiece version → same model bytes. (0.1.97 and 0.2.0 learn slightly different
//   merges from one corpus; a model trained by either loads in both and encodes alike.)
// - ids: unk 0, bos 1, eos 2, pad 3, then the 256 byte pieces, then the merges.
//
// Everything works with SentencePiece 0.1.97 (Debian 12) and 0.2.0 (the GPU machines).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace rn::tools {

// The corpus convention shared with prepare(): inside a text file, documents are
// separated by this marker (GPT-2's, which e.g. TinyStories uses). A file without it is one
// document. The marker itself never reaches the tokenizer.
inline constexpr const char* kDocSeparator = "<|endoftext|>";

// Writes `docs` as one text file in that convention: a kDocSeparator line between
// documents, each document ending in a newline (one is added where it lacks it). Atomic
// (core/text_file.h); an error names the file after `what: `.
void write_documents(const std::string& path, const std::vector<std::string>& docs, const std::string& what);

struct TokenizerTrainOptions {
    int vocab_size = 8192;
    // SentencePiece keeps the most frequent characters covering this fraction of the text;
    // the rare rest goes through byte fallback rather than taking vocabulary slots
    double character_coverage = 0.9995;
    // at most this many bytes of text reach the trainer (SentencePiece holds all of it in
    // memory); above it we keep every k-th line, deterministically
    int64_t max_train_bytes = int64_t(64) << 20;
};

class Tokenizer {
public:
    // Loads a SentencePiece .model file; throws rn::Error on a missing or corrupt file.
    static Tokenizer load(const std::string& path);
    // Loads from the model's serialized protobuf bytes (what serialized() returns; a
    // checkpoint embeds these so it carries its own tokenizer).
    static Tokenizer from_serialized(const std::string& bytes);
    // Trains a BPE model on the lines of text files (empty lines and kDocSeparator
    // markers skipped). Deterministic: the same files give the same model bytes.
    static Tokenizer train(const std::vector<std::string>& files, const TokenizerTrainOptions& opts);
    // Same, from sentences already in memory (each one line of text).
    static Tokenizer train_from_sentences(const std::vector<std::string>& sentences,
                                          const TokenizerTrainOptions& opts);

    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;
    ~Tokenizer();

    std::vector<int32_t> encode(const std::string& text) const;
    std::string decode(const std::vector<int32_t>& ids) const;
    // the piece of one id as stored in the vocabulary ("▁the", "<0x0A>", "<s>")
    std::string id_to_piece(int32_t id) const;
    // the byte a byte-fallback piece stands for ("<0xE2>" → 0xE2); -1 for any other id
    int byte_value(int32_t id) const;

    int32_t vocab_size() const;
    int32_t bos_id() const;
    int32_t eos_id() const;
    int32_t pad_id() const;  // -1 if the model has none
    int32_t unk_id() const;

    // the model protobuf bytes, exactly what from_serialized() takes and save() writes
    const std::string& serialized() const { return serialized_; }
    // writes the .model file (atomically: a temporary file renamed into place)
    void save(const std::string& path) const;

private:
    Tokenizer();
    // from_serialized/load: `origin` names where the bytes came from in error messages
    static Tokenizer from_bytes(const std::string& bytes, const std::string& origin);
    std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
    std::string serialized_;
};

}  // namespace rn::tools
