// ifeval_punkt.h: sentence splitting for IFEval's length_constraints:number_sentences, a port of
// nltk's PunktSentenceTokenizer.tokenize (nltk 3.10, the pickle-free English model that
// lm-evaluation-harness's count_sentences loads) to C++.
//
// The algorithm is ported as nltk runs it at tokenization time: candidate ends are '.', '?', '!'
// followed by whitespace and a token or by one of )";}]*:@'({[ and the curly quotes and
// guillemets; the word before each candidate and the following token are tokenized with punkt's
// word regex and annotated (first pass: abbreviation list, ellipsis, sentence-end characters;
// second pass: collocations, frequent sentence starters, initials and ordinals); closing quotes
// and brackets after a break are realigned onto the sentence before.
//
// The English model's parameters: its abbreviation list (156 types), its 37 collocations and its
// 39 frequent sentence starters are embedded verbatim (from nltk_data punkt_tab/english). Its
// orthographic context (about 20,000 word types with case statistics from the WSJ corpus) is not
// embedded: every type is treated as unseen, except that the frequent sentence starters count as
// seen in lower case. This changes only the second pass, i.e. whether a known abbreviation, an
// initial ("A.") or a number ("3.") ends a sentence; see docs/evaluation.d/ifeval.md for the
// measured consequences. Everything else (plain words ending in '.', '?', '!', newlines that do
// not end sentences, "e.g." ending one) matches nltk.
// Torch-free. Thread-safety: stateless.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cemoe::ifeval {

// The sentences of `text` (nltk's sent_tokenize spans, realigned), in order.
std::vector<std::u32string> PunktSentences(const std::u32string& text);

// instructions_util.count_sentences: PunktSentences(text).size().
int64_t CountSentences(const std::u32string& text);

}  // namespace cemoe::ifeval
