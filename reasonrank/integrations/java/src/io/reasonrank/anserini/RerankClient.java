package io.reasonrank.anserini;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * Client for the reasonrank reranking service ({@code python -m reasonrank.serve}).
 *
 * <p>Uses only {@code java.net.http} and the Jackson that ships inside the Anserini fat jar. One client is safe to
 * share between threads; the service reranks one request at a time anyway.
 */
public final class RerankClient {
  /** A document to rerank; {@code score} is what the first stage gave it. */
  public record Candidate(String docid, String text, double score) {}

  /** One reranked document; {@code explanation} and {@code label} are null for models that give none. */
  public record Ranked(String docid, int rank, double score, String explanation, Integer label) {}

  /** The service's answer: the qid it echoed, the model that ranked, best first. */
  public record Result(String qid, String model, List<Ranked> ranking) {}

  /** A 4xx/5xx answer: the HTTP status and the service's one-line {@code error}. */
  public static final class ServiceException extends IOException {
    private static final long serialVersionUID = 1L;

    private final int status;

    public ServiceException(int status, String message) {
      super("reranking service answered " + status + ": " + message);
      this.status = status;
    }

    public int status() {
      return status;
    }
  }

  private static final ObjectMapper JSON = new ObjectMapper();

  private final HttpClient http;
  private final URI base;
  private final Duration timeout;

  /** @param base e.g. {@code http://127.0.0.1:8000}; @param timeout per request, model time included. */
  public RerankClient(URI base, Duration timeout) {
    this.base = base;
    this.timeout = timeout;
    // HTTP/1.1: the default HTTP/2 upgrade attempt on plain http:// only makes uvicorn log a warning per request.
    this.http = HttpClient.newBuilder()
        .version(HttpClient.Version.HTTP_1_1)
        .connectTimeout(Duration.ofSeconds(10))
        .build();
  }

  /** The model name the service reports, or an exception if it is down or not ready. */
  public String health() throws IOException, InterruptedException {
    HttpRequest request = HttpRequest.newBuilder(base.resolve("/health")).timeout(timeout).GET().build();
    JsonNode body = send(request);
    if (!body.path("ready").asBoolean(false)) {
      throw new ServiceException(503, "the service has no model loaded");
    }
    return body.path("model").asText();
  }

  /**
   * Rerank {@code candidates} for {@code query}.
   *
   * @param qid echoed back; may be null
   * @param topK how many to return, or null for all
   */
  public Result rerank(String qid, String query, List<Candidate> candidates, Integer topK)
      throws IOException, InterruptedException {
    ObjectNode payload = JSON.createObjectNode();
    payload.put("query", query);
    if (qid != null) {
      payload.put("qid", qid);
    }
    if (topK != null) {
      payload.put("top_k", topK);
    }
    ArrayNode list = payload.putArray("candidates");
    for (Candidate candidate : candidates) {
      list.addObject().put("docid", candidate.docid()).put("text", candidate.text()).put("score", candidate.score());
    }
    HttpRequest request = HttpRequest.newBuilder(base.resolve("/rerank"))
        .timeout(timeout)
        .header("Content-Type", "application/json")
        .POST(HttpRequest.BodyPublishers.ofByteArray(JSON.writeValueAsBytes(payload)))
        .build();
    JsonNode body = send(request);
    List<Ranked> ranking = new ArrayList<>();
    for (JsonNode item : body.path("ranking")) {
      JsonNode explanation = item.path("explanation");
      JsonNode label = item.path("label");
      ranking.add(new Ranked(
          item.path("docid").asText(),
          item.path("rank").asInt(),
          item.path("score").asDouble(),
          explanation.isTextual() ? explanation.asText() : null,
          label.isIntegralNumber() ? label.asInt() : null));
    }
    return new Result(body.path("qid").asText(), body.path("model").asText(), List.copyOf(ranking));
  }

  private JsonNode send(HttpRequest request) throws IOException, InterruptedException {
    HttpResponse<byte[]> response = http.send(request, HttpResponse.BodyHandlers.ofByteArray());
    JsonNode body;
    try {
      body = JSON.readTree(response.body());
    } catch (IOException notJson) {
      throw new ServiceException(response.statusCode(), "the answer is not JSON: " + notJson.getMessage());
    }
    if (response.statusCode() != 200) {
      throw new ServiceException(response.statusCode(), body.path("error").asText("no error message"));
    }
    return body;
  }
}
