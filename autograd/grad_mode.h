// autograd/grad_mode.h — the thread-local switch that decides whether ops record a graph.
#pragma once

namespace rn {

struct GradMode {
    static bool enabled();
    static void set_enabled(bool on);
};

// Turns recording off for a scope (optimizer steps, evaluation, decoding).
class NoGradGuard {
public:
    NoGradGuard() : prev_(GradMode::enabled()) { GradMode::set_enabled(false); }
    ~NoGradGuard() { GradMode::set_enabled(prev_); }
    NoGradGuard(const NoGradGuard&) = delete;
    NoGradGuard& operator=(const NoGradGuard&) = delete;

private:
    bool prev_;
};

// Turns recording back on inside a no-grad scope.
class EnableGradGuard {
public:
    EnableGradGuard() : prev_(GradMode::enabled()) { GradMode::set_enabled(true); }
    ~EnableGradGuard() { GradMode::set_enabled(prev_); }
    EnableGradGuard(const EnableGradGuard&) = delete;
    EnableGradGuard& operator=(const EnableGradGuard&) = delete;

private:
    bool prev_;
};

}  // namespace rn
