#include <hotswap/appup/error.hpp>

#include <utility>

namespace hotswap::appup {

namespace {

std::string input_error_message(const std::string& file, const std::string& field, const std::string& problem) {
  if (field.empty()) return file + ": " + problem;
  return file + ": " + field + ": " + problem;
}

}  // namespace

InputError::InputError(std::string file, std::string field, std::string problem)
    : std::runtime_error(input_error_message(file, field, problem)),
      file_(std::move(file)),
      field_(std::move(field)),
      problem_(std::move(problem)) {}

}  // namespace hotswap::appup
