/*
 * shellwords: splits the [handler] command of the config into argv the way
 * a shell splits simple words ('single', "double", backslash), without
 * expansion of any kind: no variables, globs, pipes or redirections, since
 * dlqd runs the program itself (execve, no shell). Pure.
 */
#pragma once

/*
 * Splits cmd into a new NULL-terminated argv (free with strv_free()). Returns
 * 0; -EINVAL for an empty command, an unbalanced quote or a trailing
 * backslash; -ENOMEM. On failure *argv is untouched and, when why is given,
 * *why names the problem in words for a diagnostic.
 */
int shellwords_split(const char *cmd, char ***argv, const char **why);
