/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdbool.h>
#include <string.h>

#include "config-lexical.h"

/*
 * The file as libconfuse's lexer (src/lexer.l) reads it, scanned by us:
 *  - libconfuse counts a comment's line twice (3.3: each # or // comment
 *    adds two to the line number, a slash-star one adds one), so every
 *    error after a comment would name a wrong line.  We blank comments out
 *    (newlines kept) and give libconfuse the result.
 *  - It names the end of the file for a string left open (and accepts a
 *    comment left open, swallowing the rest), and accepts a file that ends
 *    inside a section.  We note where the unclosed one starts.
 * Token rules as libconfuse 3.3 applies them (checked by hand): an
 * unquoted string is a run of characters other than space, tab, CR, LF,
 * # " ' = { } ( ) + , *; "#" anywhere, and "//" or slash-star at the start
 * of a token, begin a comment; "//" inside a token ("/usr//lib") does not.
 */

static bool is_unquoted_char(char c)
{
	return c && !strchr(" \t\r\n#\"'={}()+,*", c);
}

static void blank(char *from, char *to)
{
	for (char *p = from; p < to; p++)
		if (*p != '\n')
			*p = ' ';
}

int count_newlines(const char *from, const char *to)
{
	int n = 0;

	for (const char *p = from; p < to; p++)
		n += *p == '\n';
	return n;
}

/* From the opening quote: past the closing one, or NULL at the end. */
static char *skip_string(char *p)
{
	char quote = *p++;

	for (; *p; p++) {
		if (*p == quote)
			return p + 1;
		if (*p == '\\' && p[1] && (quote == '"' || p[1] == '\\' || p[1] == '\'' || p[1] == '\n'))
			p++;
		else if (quote == '"' && p[0] == '$' && p[1] == '{' && strchr(p, '}'))
			p = strchr(p, '}'); /* ${VAR} substitution */
	}
	return NULL;
}

void scan_lexically(char *text, struct lexical_scan *ret)
{
	struct lexical_scan s = {};
	int open_lines[64], depth = 0, line = 1;
	char *p = text;

	while (*p) {
		char *start = p, *end;
		size_t run = 0, slashes = 0;

		while (is_unquoted_char(p[run]))
			run++;
		while (p[slashes] == '/')
			slashes++;
		if (*p == '\n') {
			line++;
			p++;
		} else if (*p == '#' || slashes >= 2) {
			p += strcspn(p, "\n");
			blank(start, p);
		} else if (p[0] == '/' && p[1] == '*') {
			end = strstr(p + 2, "*/");
			if (!end) {
				s.open_comment_line = line;
				end = p + strlen(p) - 2;
			}
			p = end + 2;
			line += count_newlines(start, p);
			blank(start, p);
		} else if (*p == '"' || *p == '\'') {
			end = skip_string(p);
			if (!end) {
				s.open_string_line = line;
				s.open_quote = *p;
				break;
			}
			line += count_newlines(p, end);
			p = end;
		} else if (p[0] == '$' && p[1] == '{' && strchr(p, '}')) {
			end = strchr(p, '}') + 1;
			line += count_newlines(p, end);
			p = end;
		} else if (*p == '{') {
			if (depth < 64)
				open_lines[depth] = line;
			depth++;
			p++;
		} else if (*p == '}') {
			if (depth > 0)
				depth--;
			else if (!s.extra_brace_line)
				s.extra_brace_line = line;
			p++;
		} else {
			p += run ? run : 1;
		}
	}
	if (depth > 0)
		s.open_brace_line = open_lines[depth <= 64 ? depth - 1 : 63];
	*ret = s;
}
