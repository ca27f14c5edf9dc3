/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* The subcommands of the diffmem program. Each takes argc/argv starting at
 * its own name and returns the process exit status. */
#ifndef DMEM_TOOLS_CMD_H
#define DMEM_TOOLS_CMD_H

#include <getopt.h>
#include <stdio.h>

typedef struct dmem_cmd {
  const char *name;
  const char *summary;
  const char *usage; /* full help text */
  int (*run)(int argc, char **argv);
} dmem_cmd;

/* Exit codes: 0 success, 1 the work failed, 2 bad usage. */
enum { EXIT_USAGE = 2 };

extern const dmem_cmd dmem_cmd_analyze;
extern const dmem_cmd dmem_cmd_bench;
extern const dmem_cmd dmem_cmd_demo;
extern const dmem_cmd dmem_cmd_probe;
extern const dmem_cmd dmem_cmd_stat;

/* diffmem bench ksm (bench_ksm.c): argv[0] is "ksm". */
int bench_ksm_run(int argc, char **argv);
/* diffmem bench sidechannel (bench_sidechannel.c): argv[0] is "sidechannel". */
int bench_sidechannel_run(int argc, char **argv);
/* diffmem bench faults (bench_faults.c): argv[0] is "faults". */
int bench_faults_run(int argc, char **argv);

/* Prints "diffmem CMD: message" to stderr and returns EXIT_USAGE. */
int cmd_usage_error(const dmem_cmd *cmd, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

/* The next option of argv (argv[0] is the command's own name) by
 * getopt_long(3), long options only: "--opt value" and "--opt=value"
 * alike, an unambiguous prefix of a name too, operands anywhere, and "--"
 * ends the options. Returns the option's val, -1 when none is left (the
 * operands are then argv[optind..argc-1]), or '?' after printing a usage
 * error for cmd (an unknown option, or one without its value). Set optind
 * to 0 before the first call for a new argv. */
int cmd_getopt(const dmem_cmd *cmd, int argc, char **argv, const struct option *longopts);

#endif
