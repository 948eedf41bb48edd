#include "trainer/synth/synth_words.h"

#include <string>
#include <vector>

namespace cemoe::synth {

const std::vector<std::string>& PersonNames() {
  static const std::vector<std::string> v = {
      "Ava",  "Ben",  "Cara", "Dan",  "Eli",  "Finn", "Gina", "Hugo", "Ida",  "Jack",
      "Kira", "Leo",  "Mia",  "Nora", "Omar", "Pia",  "Ray",  "Sara", "Tom",  "Uma",
      "Vera", "Will", "Yara", "Zoe",  "Anna", "Bob",  "Cleo", "Dora", "Evan", "Fay",
      "Gus",  "Hana", "Ivan", "June", "Kai",  "Lily", "Max",  "Nina", "Owen", "Rosa"};
  return v;
}

const std::vector<Countable>& Countables() {
  static const std::vector<Countable> v = {
      {"apple", "apples"},     {"pencil", "pencils"}, {"cookie", "cookies"}, {"marble", "marbles"},
      {"sticker", "stickers"}, {"book", "books"},     {"card", "cards"},     {"egg", "eggs"},
      {"shell", "shells"},     {"coin", "coins"},     {"flower", "flowers"}, {"toy", "toys"},
      {"cup", "cups"},         {"ball", "balls"},     {"stamp", "stamps"},   {"button", "buttons"},
      {"candle", "candles"},   {"bead", "beads"},     {"orange", "oranges"}, {"lemon", "lemons"}};
  return v;
}

const std::vector<std::string>& Places() {
  static const std::vector<std::string> v = {"the market", "the park",  "the school",
                                             "the farm",   "the beach", "the shop",
                                             "the fair",   "the lake",  "the garden"};
  return v;
}

const std::vector<std::string>& SortingWords() {
  static const std::vector<std::string> v = {
      "apple",  "anchor", "arrow",  "basket",   "bridge", "butter", "candle",  "castle", "cloud",
      "copper", "desert", "dinner", "dragon",   "eagle",  "engine", "evening", "falcon", "feather",
      "forest", "garden", "ginger", "glass",    "harbor", "helmet", "honey",   "island", "ivory",
      "jacket", "jungle", "kettle", "kitten",   "ladder", "lemon",  "lantern", "marble", "meadow",
      "mirror", "needle", "nectar", "number",   "ocean",  "orange", "otter",   "pepper", "pillow",
      "planet", "rabbit", "ribbon", "river",    "saddle", "silver", "spider",  "summer", "table",
      "tiger",  "timber", "tunnel", "umbrella", "valley", "velvet", "violin",  "wagon",  "window",
      "winter", "yellow", "yogurt", "zebra",    "zipper", "button", "carpet",  "doctor", "finger",
      "hammer", "insect", "monkey", "pencil",   "rocket", "sister", "turtle",  "wallet"};
  return v;
}

const std::vector<std::string>& Colours() {
  static const std::vector<std::string> v = {"red",   "blue",  "green",  "yellow", "black",
                                             "white", "brown", "orange", "purple", "grey"};
  return v;
}

const std::vector<std::string>& Jobs() {
  static const std::vector<std::string> v = {
      "baker",   "farmer", "teacher", "doctor", "painter", "singer", "pilot",  "sailor",
      "builder", "writer", "nurse",   "tailor", "fisher",  "miner",  "driver", "cook"};
  return v;
}

const std::vector<std::string>& Foods() {
  static const std::vector<std::string> v = {"pears", "bread", "rice", "fish",    "cheese", "soup",
                                             "beans", "plums", "nuts", "carrots", "honey",  "corn"};
  return v;
}

const std::vector<std::string>& Topics() {
  static const std::vector<std::string> v = {
      "a rainy day",         "the sea",         "a small town",
      "your best friend",    "a red bike",      "the old library",
      "a walk in the park",  "the winter",      "a busy market",
      "a green garden",      "the night sky",   "a long train ride",
      "a quiet village",     "the summer fair", "a tall mountain",
      "your favourite food", "a lost kitten",   "the first day of school",
      "a river at dawn",     "a family dinner"};
  return v;
}

const std::vector<std::string>& Adjectives() {
  static const std::vector<std::string> v = {
      "quiet", "bright", "warm", "cold", "busy",  "calm",  "green", "small", "large", "happy",
      "old",   "new",    "soft", "loud", "clean", "sunny", "dark",  "fresh", "kind",  "slow"};
  return v;
}

const std::vector<std::string>& Nouns() {
  static const std::vector<std::string> v = {
      "tree", "road", "house",  "child", "dog",   "bird",    "boat",  "cat",  "hill", "lamp",
      "door", "song", "friend", "city",  "field", "morning", "light", "wind", "sky",  "table"};
  return v;
}

const std::vector<std::string>& Syllables() {
  static const std::vector<std::string> v = {"zor", "bel", "ka",  "mir", "tan", "vel", "lo",
                                             "ris", "dun", "sa",  "fen", "gor", "hal", "ti",
                                             "mon", "pra", "nel", "ush", "bri", "kel", "dor",
                                             "vy",  "ral", "es",  "to",  "wen", "gal", "rin"};
  return v;
}

std::string InventedWord(SynthRng& rng, int syllables) {
  std::string w;
  for (int i = 0; i < syllables; ++i) w += rng.Pick(Syllables());
  return w;
}

std::string Capitalise(std::string word) {
  if (!word.empty() && word[0] >= 'a' && word[0] <= 'z') word[0] = static_cast<char>(word[0] - 32);
  return word;
}

std::string Upper(std::string text) {
  for (char& c : text) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
  }
  return text;
}

std::string Lower(std::string text) {
  for (char& c : text) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  return text;
}

std::string JoinAnd(const std::vector<std::string>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += i + 1 == items.size() ? " and " : ", ";
    out += items[i];
  }
  return out;
}

std::string Join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += sep;
    out += items[i];
  }
  return out;
}

}  // namespace cemoe::synth
