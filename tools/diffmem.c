/* SPDX-FileCopyrightText: 2026 The libdiffmem authors
 * SPDX-License-Identifier: LGPL-2.1-or-later */
/* diffmem: the command-line face of libdiffmem. One table of subcommands;
 * `diffmem help CMD` prints a command's usage. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <diffmem/codec.h>
#include <diffmem/diffmem.h>

#include "cmd.h"

static const dmem_cmd *const commands[] = {
    &dmem_cmd_analyze, &dmem_cmd_bench, &dmem_cmd_demo, &dmem_cmd_probe, &dmem_cmd_stat,
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void print_help(FILE *f)
{
  fprintf(f,
          "usage: diffmem [-V|--version] [-h|--help] COMMAND [ARGS...]\n"
          "\n"
          "libdiffmem %s: saves host memory for virtual machines by sharing\n"
          "identical pages, patching similar ones and compressing cold ones.\n"
          "\n"
          "commands:\n",
          dmem_version());
  for (size_t i = 0; i < NCOMMANDS; i++)
    fprintf(f, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
  fprintf(f, "  %-10s %s\n", "help", "show this help, or `help COMMAND` for one command");
  fprintf(f, "  %-10s %s\n", "version", "print the library's version");
}

static const dmem_cmd *find_command(const char *name)
{
  for (size_t i = 0; i < NCOMMANDS; i++)
    if (strcmp(commands[i]->name, name) == 0)
      return commands[i];
  return NULL;
}

int cmd_usage_error(const dmem_cmd *cmd, const char *fmt, ...)
{
  va_list ap;
  fprintf(stderr, "diffmem %s: ", cmd->name);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nTry 'diffmem help %s'.\n", cmd->name);
  return EXIT_USAGE;
}

int cmd_getopt(const dmem_cmd *cmd, int argc, char **argv, const struct option *longopts)
{
  opterr = 0; /* the messages are ours */
  int c = getopt_long(argc, argv, ":", longopts, NULL);
  if (c == ':') {
    cmd_usage_error(cmd, "%s needs a value", argv[optind - 1]);
    return '?';
  }
  if (c == '?') {
    const char *a = argv[optind - 1];
    const char *eq = strchr(a, '=');
    if (eq && strncmp(a, "--", 2) == 0)
      cmd_usage_error(cmd, "%.*s takes no value, or is not an option", (int)(eq - a), a);
    else
      cmd_usage_error(cmd, "unknown option %s", a);
    return '?';
  }
  return c;
}

/* The version, and the codecs this build has (a build without liblzo2 has
 * no lzo: README, "License"). */
static int print_version(void)
{
  printf("diffmem %s (libdiffmem %s)\ncodecs:", DMEM_VERSION_STRING, dmem_version());
  for (unsigned id = 1; id < DMEM_CODEC_BEST; id++)
    if (dmem_codec_available((dmem_codec_id)id))
      printf(" %s", dmem_codec_name((dmem_codec_id)id));
  printf("\n");
  return 0;
}

/* Every command ends here: a write error on stdout (a full disk, a closed
 * pipe, /dev/full) makes the exit status 1 and is said on stderr, instead
 * of passing for success. */
static int finish(int rc)
{
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "diffmem: cannot write the output: %s\n", strerror(errno ? errno : EIO));
    return rc ? rc : 1;
  }
  return rc;
}

int main(int argc, char **argv)
{
  if (argc < 2) {
    print_help(stderr);
    return EXIT_USAGE;
  }
  const char *name = argv[1];
  if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0 || strcmp(name, "version") == 0)
    return finish(print_version());
  if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
    print_help(stdout);
    return finish(0);
  }
  if (strcmp(name, "help") == 0) {
    if (argc < 3) {
      print_help(stdout);
      return finish(0);
    }
    const dmem_cmd *cmd = find_command(argv[2]);
    if (!cmd) {
      fprintf(stderr, "diffmem: unknown command '%s'; try 'diffmem help'\n", argv[2]);
      return EXIT_USAGE;
    }
    fputs(cmd->usage, stdout);
    return finish(0);
  }
  const dmem_cmd *cmd = find_command(name);
  if (!cmd) {
    fprintf(stderr, "diffmem: unknown command '%s'; try 'diffmem help'\n", name);
    return EXIT_USAGE;
  }
  /* --help anywhere before "--" (after it, an operand). */
  for (int i = 2; i < argc && strcmp(argv[i], "--") != 0; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(cmd->usage, stdout);
      return finish(0);
    }
  }
  return finish(cmd->run(argc - 1, argv + 1));
}
