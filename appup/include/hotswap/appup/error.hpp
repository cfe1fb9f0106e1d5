// Errors for malformed appups, manifests and impossible plans.
#pragma once

#include <stdexcept>
#include <string>

namespace hotswap::appup {

// A problem with one input file. what() reads "<file>: <field>: <problem>" so an
// operator can go straight to the spot; field is a JSON path like "up[0].instructions[2].op"
// (empty when the problem is the whole file, e.g. it cannot be read).
class InputError : public std::runtime_error {
 public:
  InputError(std::string file, std::string field, std::string problem);
  const std::string& file() const { return file_; }
  const std::string& field() const { return field_; }
  const std::string& problem() const { return problem_; }

 private:
  std::string file_, field_, problem_;
};

// The two releases cannot be connected by a plan (no appup entry matches, a
// dependency cycle, a step this host cannot perform). what() names the module
// and, where one is involved, the appup file and field.
class PlanError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace hotswap::appup
