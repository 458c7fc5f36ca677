/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The config file's text as libconfuse's lexer reads it (config-lexical.c). */
#ifndef BLKSERVD_CONFIG_LEXICAL_H
#define BLKSERVD_CONFIG_LEXICAL_H

/* Where a string, comment or brace is left open (scan_lexically). */
struct lexical_scan {
	int open_string_line; /* 0: none */
	char open_quote;
	int open_comment_line;
	int open_brace_line;
	int extra_brace_line;
};

/* Blank @text's comments out in place (newlines kept) and note in *@ret
 * where a string, comment or brace is left open. */
void scan_lexically(char *text, struct lexical_scan *ret);
/* The newlines in [@from, @to). */
int count_newlines(const char *from, const char *to);

#endif
