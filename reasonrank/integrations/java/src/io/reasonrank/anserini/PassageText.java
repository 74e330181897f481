package io.reasonrank.anserini;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.util.ArrayList;
import java.util.List;

/**
 * The passage text of a stored raw document, read exactly as reasonrank's Python side reads it
 * ({@code reasonrank.documents.text_from_raw}), so that Java and Python send the reranker the same text.
 */
public final class PassageText {
  private static final ObjectMapper JSON = new ObjectMapper();

  private PassageText() {}

  /** Pyserini JSONL keeps {@code contents}; BEIR-style documents keep {@code title} and {@code text}; else raw. */
  public static String fromRaw(String raw) {
    if (raw == null) {
      return "";
    }
    JsonNode doc;
    try {
      doc = JSON.readTree(raw);
    } catch (JsonProcessingException notJson) {
      return raw;
    }
    if (doc == null || !doc.isObject()) {
      return raw;
    }
    if (doc.has("contents")) {
      return doc.get("contents").asText();
    }
    List<String> parts = new ArrayList<>();
    for (String key : new String[] {"title", "text"}) {
      JsonNode value = doc.get(key);
      if (value != null && !value.isNull() && !value.asText().isEmpty()) {
        parts.add(value.asText().strip());
      }
    }
    return parts.isEmpty() ? raw : String.join(" ", parts);
  }
}
