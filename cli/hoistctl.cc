// hoistctl: operator CLI over the Control API (placeholder until issue 5).
#include <cstdio>
int main() {
  std::fprintf(stderr, "hoistctl: not built yet\n");
  return 2;
}
