// examples/01_autograd.cpp — the engine in one page: a tiny MLP learns to separate two
// interleaved spirals. Read it top to bottom:
//   1. tensors are made from a seeded generator, so every run prints the same numbers;
//   2. parameters are leaves with requires_grad_(): ops on them record a graph;
//   3. loss.backward() walks that graph once and fills every parameter's .grad();
//   4. the update runs under NoGradGuard: it must not itself be recorded.
// Build and run:  cmake --build build && ./build/example_01_autograd
#include <cmath>
#include <cstdio>

#include "ops/matmul.h"
#include "ops/ops.h"
#include "ops/softmax.h"

using namespace rn;

int main() {
    Generator gen(2024);

    // ---- data: N points on two spirals, labels 0 and 1
    const int64_t N = 256;
    std::vector<float> xy(size_t(N) * 2);
    std::vector<int64_t> label(static_cast<size_t>(N));
    for (int64_t i = 0; i < N; ++i) {
        int64_t cls = i % 2;
        double t = 0.25 + 3.0 * double(i / 2) / double(N / 2);  // angle grows along the arm
        double r = t / 3.25;
        double a = t * 2.2 + (cls ? M_PI : 0.0);
        xy[size_t(2 * i)] = float(r * std::cos(a) + 0.02 * gen.next_uniform());
        xy[size_t(2 * i + 1)] = float(r * std::sin(a) + 0.02 * gen.next_uniform());
        label[size_t(i)] = cls;
    }
    Tensor x = from_vector(xy, {N, 2});
    Tensor y = from_vector(label, {N});

    // ---- parameters: leaves that require grad. Scaled so activations start near unit size.
    const int64_t H = 32;
    auto param = [&](Shape s, double scale) { return (randn(s, gen) * scale).detach().requires_grad_(); };
    Tensor w1 = param({2, H}, 1.0), b1 = param({H}, 0.0);
    Tensor w2 = param({H, H}, 1.0 / std::sqrt(double(H))), b2 = param({H}, 0.0);
    Tensor w3 = param({H, 2}, 1.0 / std::sqrt(double(H))), b3 = param({2}, 0.0);
    std::vector<Tensor> params = {w1, b1, w2, b2, w3, b3};

    // ---- the model is just ops; each one records its backward node
    auto forward = [&](const Tensor& in) {
        Tensor h = tanh(matmul(in, w1) + b1);  // [N,2]x[2,H] + [H] broadcast → [N,H]
        h = tanh(matmul(h, w2) + b2);
        return matmul(h, w3) + b3;  // logits [N,2]
    };

    // ---- training: plain gradient descent with momentum
    const double lr = 0.1, momentum = 0.9;
    std::vector<Tensor> velocity;
    for (auto& p : params) velocity.push_back(zeros_like(p));
    std::printf("step   loss     accuracy\n");
    for (int step = 0; step <= 1500; ++step) {
        Tensor logits = forward(x);
        Tensor loss = cross_entropy(logits, y);  // mean over the N points
        for (auto& p : params) p.zero_grad();
        loss.backward();  // fills p.grad() for every parameter

        {
            NoGradGuard no_grad;  // the update is not part of the model
            for (size_t i = 0; i < params.size(); ++i) {
                // v = momentum*v + grad;  p -= lr*v
                velocity[i] = velocity[i] * momentum + params[i].grad();
                params[i].copy_(params[i] - velocity[i] * lr);
            }
        }
        if (step % 150 == 0) {
            NoGradGuard no_grad;
            // accuracy: the predicted class is the larger logit
            auto l = logits.to_vector<float>();
            int correct = 0;
            for (int64_t i = 0; i < N; ++i) correct += (l[size_t(2 * i + 1)] > l[size_t(2 * i)]) == (label[size_t(i)] == 1);
            std::printf("%4d   %.4f   %5.1f%%\n", step, loss.item(), 100.0 * correct / double(N));
        }
    }
    return 0;
}
