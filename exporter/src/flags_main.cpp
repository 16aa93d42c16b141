// guest-exporter-flags: guest-exporter's flag parser, run by guest-exporter at
// start (flags.h says why it is a program of its own).
#include "flags.h"

int main(int argc, char** argv) {
  return gm::exporter::RunFlagParser(argc, argv, gm::exporter::kOptionsFd);
}
