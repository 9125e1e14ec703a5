// Distributed runs from the command line: which rank this process is (from the environment our
// launcher or OpenMPI's mpirun sets) and the one-host launcher behind `train --gpus N` / `--procs
// N`. The only place the distributed environment is read: the library gets a DistConfig.
#pragma once
#include <mambacpp/mambacpp.h>

#include <optional>
#include <string>

namespace mambacpp::cli {

// This process's rank, or nullopt when it was not started as one. Read: MAMBACPP_RANK,
// MAMBACPP_WORLD_SIZE, MAMBACPP_LOCAL_RANK (our launcher), else OMPI_COMM_WORLD_RANK,
// OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK (mpirun); MASTER_ADDR (default 127.0.0.1)
// and MASTER_PORT (default 29500) name rank 0's rendezvous; MAMBACPP_DIST_TIMEOUT (seconds).
// Throws Error(invalid_argument) naming the variable for a malformed value.
std::optional<dist::DistConfig> rank_from_env();

// Runs `n` ranks of this same binary with this process's own arguments and the rank variables
// set (rendezvous on 127.0.0.1 and a free port, or MASTER_PORT when set), forwards their output
// and waits. A rank that fails (non-zero exit or a signal) ends the others (SIGTERM, then SIGKILL
// after 10 s); the return is then non-zero after one line on stderr naming the rank. `what` names
// the command in that line ("train").
int launch_ranks(int n, const std::string& what);

}  // namespace mambacpp::cli
