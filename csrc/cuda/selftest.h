// Runs one self-test kernel of cuda/selftest.cuh by name on `input` (threads x blocks threads)
// and returns its output (see selftest.inc for the names).
#pragma once

#include <string>
#include <vector>

namespace pyireg {
std::vector<float> run_selftest(const std::string& name, const std::vector<float>& input, int threads, int blocks);
}
