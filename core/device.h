// core/device.h — where a tensor's bytes live: the CPU or one CUDA device.
#pragma once
#include <cstdint>
#include <ostream>
#include <string>

namespace rn {

enum class DeviceType : uint8_t { CPU, CUDA };

struct Device {
    DeviceType type = DeviceType::CPU;
    int index = 0;

    static Device cpu() { return {DeviceType::CPU, 0}; }
    static Device cuda(int i = 0) { return {DeviceType::CUDA, i}; }
    static Device parse(const std::string& s);  // "cpu", "cuda", "cuda:1"

    bool is_cpu() const { return type == DeviceType::CPU; }
    bool is_cuda() const { return type == DeviceType::CUDA; }
    bool operator==(const Device& o) const { return type == o.type && index == o.index; }
    bool operator!=(const Device& o) const { return !(*this == o); }
    std::string str() const;
};

inline std::ostream& operator<<(std::ostream& os, const Device& d) { return os << d.str(); }

}  // namespace rn
