// SQuAD JSON reading and writing with nlohmann-json; see squad_dataset.h. Every value is
// type-checked and an error names its JSON path, because datasets and predictions come from
// other tools and hand edits.
#include "finetune/squad_dataset.h"

#include "absl/strings/str_cat.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"

namespace headroom {
namespace {

using nlohmann::json;

absl::Status Bad(const std::string& source, const std::string& path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", path, ": ", what));
}

absl::StatusOr<json> ParseJson(absl::string_view text, const std::string& source) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid JSON"));
  }
  return j;
}

// The member `key` of object `j` at `path`, which must exist and be of the checked kind.
absl::StatusOr<const json*> Member(const json& j, const char* key, const std::string& source,
                                   const std::string& path, bool (json::*is_kind)() const,
                                   const char* kind) {
  auto it = j.find(key);
  const std::string where = absl::StrCat(path, path.empty() ? "" : ".", key);
  if (it == j.end()) return Bad(source, where, "missing");
  if (!((*it).*is_kind)()) return Bad(source, where, absl::StrCat("expected ", kind));
  return &*it;
}

absl::StatusOr<SquadQuestion> ParseQuestion(const json& q, const std::string& source,
                                            const std::string& path) {
  if (!q.is_object()) return Bad(source, path, "expected an object");
  SquadQuestion out;
  HR_ASSIGN_OR_RETURN(const json* id, Member(q, "id", source, path, &json::is_string, "a string"));
  HR_ASSIGN_OR_RETURN(const json* question,
                      Member(q, "question", source, path, &json::is_string, "a string"));
  HR_ASSIGN_OR_RETURN(const json* answers,
                      Member(q, "answers", source, path, &json::is_array, "an array"));
  out.id = id->get<std::string>();
  out.question = question->get<std::string>();
  for (size_t i = 0; i < answers->size(); ++i) {
    const std::string ap = absl::StrCat(path, ".answers[", i, "]");
    const json& a = (*answers)[i];
    if (!a.is_object()) return Bad(source, ap, "expected an object");
    HR_ASSIGN_OR_RETURN(const json* text,
                        Member(a, "text", source, ap, &json::is_string, "a string"));
    HR_ASSIGN_OR_RETURN(const json* start, Member(a, "answer_start", source, ap,
                                                  &json::is_number_integer, "an integer"));
    if (start->get<int64_t>() < 0) {
      return Bad(source, ap + ".answer_start", absl::StrCat("is negative (", start->dump(), ")"));
    }
    out.answers.push_back({text->get<std::string>(), start->get<int64_t>()});
  }
  return out;
}

}  // namespace

int64_t SquadDataset::num_questions() const {
  int64_t n = 0;
  for (const SquadParagraph& p : paragraphs) n += static_cast<int64_t>(p.questions.size());
  return n;
}

absl::StatusOr<SquadDataset> ParseSquadDataset(absl::string_view text, const std::string& source) {
  HR_ASSIGN_OR_RETURN(json j, ParseJson(text, source));
  if (!j.is_object()) return Bad(source, "(top level)", "expected an object with \"data\"");
  SquadDataset out;
  auto version = j.find("version");
  if (version != j.end() && version->is_string()) out.version = version->get<std::string>();
  HR_ASSIGN_OR_RETURN(const json* data, Member(j, "data", source, "", &json::is_array, "an array"));
  for (size_t a = 0; a < data->size(); ++a) {
    const std::string art = absl::StrCat("data[", a, "]");
    const json& article = (*data)[a];
    if (!article.is_object()) return Bad(source, art, "expected an object");
    HR_ASSIGN_OR_RETURN(const json* paragraphs,
                        Member(article, "paragraphs", source, art, &json::is_array, "an array"));
    for (size_t p = 0; p < paragraphs->size(); ++p) {
      const std::string pp = absl::StrCat(art, ".paragraphs[", p, "]");
      const json& par = (*paragraphs)[p];
      if (!par.is_object()) return Bad(source, pp, "expected an object");
      HR_ASSIGN_OR_RETURN(const json* context,
                          Member(par, "context", source, pp, &json::is_string, "a string"));
      HR_ASSIGN_OR_RETURN(const json* qas,
                          Member(par, "qas", source, pp, &json::is_array, "an array"));
      SquadParagraph paragraph;
      paragraph.context = context->get<std::string>();
      for (size_t q = 0; q < qas->size(); ++q) {
        HR_ASSIGN_OR_RETURN(SquadQuestion question,
                            ParseQuestion((*qas)[q], source, absl::StrCat(pp, ".qas[", q, "]")));
        paragraph.questions.push_back(std::move(question));
      }
      out.paragraphs.push_back(std::move(paragraph));
    }
  }
  return out;
}

absl::StatusOr<SquadDataset> ReadSquadDataset(const std::string& path) {
  HR_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseSquadDataset(text, path);
}

absl::StatusOr<SquadPredictions> ParseSquadPredictions(absl::string_view text,
                                                       const std::string& source) {
  HR_ASSIGN_OR_RETURN(json j, ParseJson(text, source));
  if (!j.is_object()) {
    return Bad(source, "(top level)", "expected an object mapping question ids to answer texts");
  }
  SquadPredictions out;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!it.value().is_string()) {
      return Bad(source, absl::StrCat("\"", it.key(), "\""), "expected a string (the answer text)");
    }
    out[it.key()] = it.value().get<std::string>();
  }
  return out;
}

absl::StatusOr<SquadPredictions> ReadSquadPredictions(const std::string& path) {
  HR_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseSquadPredictions(text, path);
}

std::string SquadPredictionsJson(const std::vector<std::pair<std::string, std::string>>& items) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (const auto& [id, text] : items) j[id] = text;
  return j.dump(4, ' ', /*ensure_ascii=*/true) + "\n";
}

absl::Status WriteSquadPredictions(const std::string& path,
                                   const std::vector<std::pair<std::string, std::string>>& items) {
  return WriteFileAtomically(path, SquadPredictionsJson(items));
}

}  // namespace headroom
