// core/env.h — reading an RN_* switch that picks one of a few integer settings (A/B runs
// of kernel variants; README, "Environment switches"). Callers read it once and keep it.
#pragma once
#include <cstdlib>
#include <initializer_list>

namespace rn {

// The value of `name` when it is one of `allowed`; `fallback` when it is unset or any
// other value (a switch for measurements, never an error).
inline int env_choice(const char* name, std::initializer_list<int> allowed, int fallback) {
    const char* e = std::getenv(name);
    if (!e) return fallback;
    const int v = std::atoi(e);
    for (int a : allowed)
        if (v == a) return v;
    return fallback;
}

}  // namespace rn
