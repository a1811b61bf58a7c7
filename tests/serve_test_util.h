// tests/serve_test_util.h — what the `retnet serve` tests need to drive a real server:
// a tiny checkpoint made in-process (random weights, a small tokenizer), the server as
// a child process (port 0, the chosen port read from its stdout), its RSS, and an HTTP
// client on Boost.Beast (whole responses, server-sent event streams, raw bytes).
#pragma once
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "nn/checkpoint.h"
#include "nn/retnet.h"
#include "text/tokenizer.h"

extern char** environ;

namespace rn::test {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using json = nlohmann::json;

// The retnet program: $RETNET_BIN, else the path CMake compiled in.
inline std::string retnet_binary() {
    if (const char* p = std::getenv("RETNET_BIN")) return p;
#ifdef RN_RETNET_BIN
    return RN_RETNET_BIN;
#else
    throw std::runtime_error("set RETNET_BIN to the retnet program");
#endif
}

// A temporary folder holding tiny.h5: a tiny RetNet with random weights and a
// tokenizer trained on a few hundred lines. Random weights are enough: the tests check
// the server's behaviour, not the text's quality.
struct TinyCheckpoint {
    std::filesystem::path dir;
    std::string path;
    // metadata_json: kept in the checkpoint (e.g. a "chat_template")
    // arch: retnet, or transformer (its preset matched to RetNet's tiny)
    explicit TinyCheckpoint(const std::string& metadata_json = "{}", const std::string& arch = "retnet") {
        std::string tmpl = (std::filesystem::temp_directory_path() / "rn_test_serve_XXXXXX").string();
        if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
        dir = tmpl;
        std::vector<std::string> lines;
        for (int i = 0; i < 300; ++i)
            lines.push_back("In the beginning God created the heaven and the earth " + std::to_string(i) +
                            ". And the earth was without form, and void; and darkness was upon the face of the deep.");
        tools::TokenizerTrainOptions to;
        to.vocab_size = 320;
        tools::Tokenizer tok = tools::Tokenizer::train_from_sentences(lines, to);
        nn::ModelConfig cfg = nn::ModelConfig::from_preset("tiny", tok.vocab_size(), arch);
        std::shared_ptr<nn::LanguageModel> model = nn::make_model(cfg, 7);
        path = (dir / "tiny.h5").string();
        nn::save_checkpoint(path, *model, nullptr, nn::TrainState{}, tok.serialized(), metadata_json);
    }
    ~TinyCheckpoint() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
};

// How a ServerProcess starts: by default the constructor returns once the model is loaded
// ("listening on"); with wait_until_loaded false, as soon as the port is open (the model
// may still be loading). stderr (the access log) goes to stderr_path when given.
struct ServerStart {
    bool wait_until_loaded = true;
    std::string stderr_path;
};

// `retnet serve CKPT --port 0 ARGS...` as a child; the constructor returns once it listens.
class ServerProcess {
public:
    ServerProcess(const std::string& ckpt, const std::vector<std::string>& args, const ServerStart& start = {}) {
        std::vector<std::string> argv_s = {retnet_binary(), "serve", ckpt, "--port", "0"};
        argv_s.insert(argv_s.end(), args.begin(), args.end());
        std::vector<char*> argv;
        for (auto& a : argv_s) argv.push_back(a.data());
        argv.push_back(nullptr);
        int fds[2];
        if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
        posix_spawn_file_actions_addclose(&fa, fds[0]);
        posix_spawn_file_actions_addclose(&fa, fds[1]);
        if (!start.stderr_path.empty())
            posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, start.stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        // One OpenMP thread: the tiny model gains nothing from more, and on a loaded 2-core
        // machine (ctest -j2, sanitizer builds) a parallel region waiting on a descheduled
        // worker costs a scheduler slice per op — 30× slower in the load test.
        std::vector<std::string> env_s;
        for (char** e = environ; *e; ++e)
            if (std::string(*e).rfind("OMP_NUM_THREADS=", 0) != 0) env_s.push_back(*e);
        env_s.push_back("OMP_NUM_THREADS=1");
        std::vector<char*> envp;
        for (auto& e : env_s) envp.push_back(e.data());
        envp.push_back(nullptr);
        int rc = posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), envp.data());
        posix_spawn_file_actions_destroy(&fa);
        close(fds[1]);
        out_fd_ = fds[0];
        if (rc != 0) throw std::runtime_error("cannot start " + argv_s[0] + ": " + std::strerror(rc));
        // "retnet serve: listening on http://127.0.0.1:PORT (...)"
        // or, before the model is loaded, "... answering on http://127.0.0.1:PORT meanwhile"
        const std::string marker =
            start.wait_until_loaded ? "listening on http://127.0.0.1:" : "answering on http://127.0.0.1:";
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (port_ == 0) {
            std::string line = read_line(deadline);
            auto at = line.find(marker);
            if (at != std::string::npos) port_ = std::stoi(line.substr(at + marker.size()));
        }
    }
    ~ServerProcess() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
        if (out_fd_ >= 0) close(out_fd_);
    }
    int port() const { return port_; }
    pid_t pid() const { return pid_; }

    // resident memory of the server, from /proc
    long rss_kib() const {
        std::ifstream f("/proc/" + std::to_string(pid_) + "/status");
        std::string line;
        while (std::getline(f, line))
            if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
        return -1;
    }
    void signal(int sig) { ::kill(pid_, sig); }
    // waits for the exit (at most `timeout`); returns the exit status, or -1 if killed/hung
    int wait_exit(std::chrono::seconds timeout) {
        auto deadline = std::chrono::steady_clock::now() + timeout;
        while (std::chrono::steady_clock::now() < deadline) {
            int status = 0;
            pid_t r = waitpid(pid_, &status, WNOHANG);
            if (r == pid_) {
                pid_ = -1;
                if (WIFEXITED(status)) return WEXITSTATUS(status);
                std::fprintf(stderr, "server: ended by signal %d (%s)\n", WTERMSIG(status), strsignal(WTERMSIG(status)));
                return -1;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        std::fprintf(stderr, "server: still running %lld s after the wait began\n", (long long)timeout.count());
        return -1;
    }
    // everything the server printed after the listening line (read after it exited)
    std::string rest_of_stdout() {
        std::string all;
        try {
            for (;;) all += read_line(std::chrono::steady_clock::now() + std::chrono::seconds(2)) + "\n";
        } catch (const std::exception&) {
        }
        return all;
    }

private:
    std::string read_line(std::chrono::steady_clock::time_point deadline) {
        std::string line;
        for (;;) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) throw std::runtime_error("the server printed no line in time");
            pollfd p{out_fd_, POLLIN, 0};
            if (poll(&p, 1, int(left.count())) <= 0) continue;
            char c;
            ssize_t n = ::read(out_fd_, &c, 1);
            if (n <= 0) throw std::runtime_error("the server's stdout closed (it exited?) after: " + line);
            if (c == '\n') return line;
            line += c;
        }
    }
    pid_t pid_ = -1;
    int out_fd_ = -1;
    int port_ = 0;
};

struct Reply {
    int status = 0;
    std::string body;
    http::fields headers;
    json j() const { return json::parse(body); }
};

// One connection; requests on it reuse it (keep-alive).
class Client {
public:
    explicit Client(int port) : stream_(ioc_) {
        stream_.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
        stream_.socket().set_option(tcp::no_delay(true));
    }
    Reply request(http::verb method, const std::string& target, const std::string& body = "",
                  const std::vector<std::pair<std::string, std::string>>& headers = {}) {
        http::request<http::string_body> req{method, target, 11};
        req.set(http::field::host, "127.0.0.1");
        for (const auto& [k, v] : headers) req.set(k, v);
        if (!body.empty() || method == http::verb::post) {
            req.set(http::field::content_type, "application/json");
            req.body() = body;
            req.prepare_payload();
        }
        http::write(stream_, req);
        http::response<http::string_body> res;
        http::read(stream_, buf_, res);
        Reply r;
        r.status = int(res.result_int());
        r.body = res.body();
        r.headers = res.base();
        return r;
    }
    Reply post(const std::string& target, const std::string& body) { return request(http::verb::post, target, body); }
    Reply get(const std::string& target) { return request(http::verb::get, target); }

    // Streams a completion; `on_event` gets each "data: ..." payload as it arrives and
    // may return false to stop reading (the test then drops the connection). For
    // diagnostics: *status_out gets the status as soon as the header is in (so it
    // survives an exception later), *body_out the body of an answer other than 200 (the
    // refusal's JSON error).
    template <typename F>
    int stream(const std::string& body, F&& on_event, const std::string& target = "/v1/completions",
               int* status_out = nullptr, std::string* body_out = nullptr) {
        http::request<http::string_body> req{http::verb::post, target, 11};
        req.set(http::field::host, "127.0.0.1");
        req.set(http::field::content_type, "application/json");
        req.body() = body;
        req.prepare_payload();
        http::write(stream_, req);
        http::response_parser<http::string_body> p;
        p.body_limit(64 << 20);
        http::read_header(stream_, buf_, p);
        const int status = int(p.get().result_int());
        if (status_out) *status_out = status;
        size_t used = 0;
        while (!p.is_done()) {
            http::read_some(stream_, buf_, p);
            std::string& b = p.get().body();
            if (body_out && status != 200) *body_out = b;
            size_t end;
            while ((end = b.find("\n\n", used)) != std::string::npos) {
                std::string ev = b.substr(used, end - used);
                used = end + 2;
                if (ev.rfind("data: ", 0) == 0 && !on_event(ev.substr(6))) return status;
            }
        }
        return status;
    }
    void write_raw(const std::string& bytes) { net::write(stream_.socket(), net::buffer(bytes)); }
    Reply read_reply() {
        http::response<http::string_body> res;
        http::read(stream_, buf_, res);
        return {int(res.result_int()), res.body(), res.base()};
    }
    void close() {
        beast::error_code ec;
        stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
        stream_.socket().close(ec);
    }

private:
    net::io_context ioc_;
    beast::tcp_stream stream_;
    beast::flat_buffer buf_;
};

// Whole text of a streamed completion per choice, plus what came with it.
struct Streamed {
    std::vector<std::string> text;
    std::vector<std::string> finish;
    bool done = false;  // "data: [DONE]" arrived
    json usage;
    int status = 0;
};

inline Streamed stream_completion(int port, const std::string& body) {
    Streamed s;
    Client c(port);
    s.status = c.stream(body, [&](const std::string& data) {
        if (data == "[DONE]") {
            s.done = true;
            return true;
        }
        json j = json::parse(data);
        if (j.contains("usage")) s.usage = j["usage"];
        for (const auto& ch : j["choices"]) {
            size_t i = ch["index"].get<size_t>();
            if (s.text.size() <= i) s.text.resize(i + 1), s.finish.resize(i + 1);
            s.text[i] += ch["text"].get<std::string>();
            if (!ch["finish_reason"].is_null()) s.finish[i] = ch["finish_reason"].get<std::string>();
        }
        return true;
    });
    return s;
}

// Polls /health until `pred` holds (or `timeout`); returns the last health document.
template <typename P>
json wait_health(int port, P&& pred, std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    json h;
    do {
        h = Client(port).get("/health").j();
        if (pred(h)) return h;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    } while (std::chrono::steady_clock::now() < deadline);
    return h;
}

}  // namespace rn::test
