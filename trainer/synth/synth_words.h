// synth_words.h: the closed vocabulary of `cemoe data synth`: a few hundred English words and
// names, plus invented entity names built from a fixed syllable list (countries, cities,
// surnames, animal species) so that the TruthfulQA-like facts cannot be known from anywhere but
// the generated pretraining corpus. Every list is fixed; nothing here is random.
// No word contains a capital Q (BBH's stop string "Q" would cut an answer).
// Torch-free. Thread-safety: the lists are immutable statics.
#pragma once

#include <string>
#include <vector>

#include "trainer/synth/synth_random.h"

namespace cemoe::synth {

// A countable thing in the arithmetic stories: singular and plural.
struct Countable {
  std::string one;
  std::string many;
};

const std::vector<std::string>& PersonNames();   // "Ava", "Ben", ... (story characters)
const std::vector<Countable>& Countables();      // {"apple", "apples"}, ...
const std::vector<std::string>& Places();        // "the market", "the park", ...
const std::vector<std::string>& SortingWords();  // lowercase nouns and verbs for word lists
const std::vector<std::string>& Colours();       // "red", "blue", ...
const std::vector<std::string>& Jobs();          // "baker", "farmer", ...
const std::vector<std::string>& Foods();         // "pears", "rice", ...
const std::vector<std::string>& Topics();        // IFEval writing topics: "a rainy day", ...
const std::vector<std::string>& Adjectives();    // "quiet", "bright", ...
const std::vector<std::string>& Nouns();         // singular nouns for simple sentences
const std::vector<std::string>& Syllables();     // building blocks of invented names

// Invented names: two or three syllables, capitalised ("Zorbel"), with a kind-specific ending
// for countries ("Zorbelia") and lowercase for animal species ("the glimtan").
std::string InventedWord(SynthRng& rng, int syllables);
std::string Capitalise(std::string word);
std::string Upper(std::string text);  // ASCII upper case
std::string Lower(std::string text);  // ASCII lower case

// "a, b and c" (no Oxford comma); one item alone; "a and b".
std::string JoinAnd(const std::vector<std::string>& items);
// items joined by `sep`.
std::string Join(const std::vector<std::string>& items, const std::string& sep);

}  // namespace cemoe::synth
