package io.reasonrank.anserini;

import io.anserini.rerank.Reranker;
import io.anserini.rerank.RerankerContext;
import io.anserini.search.ScoredDocs;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.lucene.document.Document;

/**
 * An Anserini {@link Reranker} that sends the top {@code depth} hits to the reasonrank service.
 *
 * <p>Add it to a {@code RerankerCascade} after Anserini's own stages (see {@link SearchAndRerank}). Hits beyond
 * {@code depth} keep their order under the reranked head, their scores shifted below the head's lowest score, as
 * {@code reasonrank.rerank.cascade.attach_tail} does, so the run stays sorted by score.
 */
public final class ServiceReranker<T> implements Reranker<T> {
  private final RerankClient client;
  private final int depth;
  private volatile String model = "reasonrank-service";

  public ServiceReranker(RerankClient client, int depth) {
    if (depth < 1) {
      throw new IllegalArgumentException("rerank depth must be at least 1, got " + depth);
    }
    this.client = client;
    this.depth = depth;
  }

  @Override
  public ScoredDocs rerank(ScoredDocs docs, RerankerContext<T> context) {
    int total = docs.lucene_docids.length;
    int head = Math.min(depth, total);
    if (head == 0) {
      return docs;
    }
    Map<String, Integer> position = new HashMap<>();
    List<RerankClient.Candidate> candidates = new ArrayList<>(head);
    for (int i = 0; i < head; i++) {
      String docid = docid(docs, i);
      position.put(docid, i);
      Document document = docs.lucene_documents[i];
      String raw = document == null ? null : document.get("raw");
      if (raw == null) {
        throw new IllegalStateException("the index stores no raw text (document " + docid
            + "): rerankers need the passages; index with -storeRaw");
      }
      candidates.add(new RerankClient.Candidate(docid, PassageText.fromRaw(raw), docs.scores[i]));
    }
    Object qid = context.getQueryId();
    RerankClient.Result result;
    try {
      result = client.rerank(qid == null ? null : qid.toString(), context.getQueryText(), candidates, null);
    } catch (IOException error) {
      throw new UncheckedIOException(error);
    } catch (InterruptedException error) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted while waiting for the reranking service", error);
    }
    if (result.ranking().size() != head) {
      throw new IllegalStateException("the service returned " + result.ranking().size() + " of " + head + " hits");
    }
    model = result.model();

    ScoredDocs out = new ScoredDocs();
    out.docids = new String[total];
    out.lucene_docids = new int[total];
    out.lucene_documents = new Document[total];
    out.scores = new float[total];
    double floor = Double.POSITIVE_INFINITY;
    for (int rank = 0; rank < head; rank++) {
      RerankClient.Ranked ranked = result.ranking().get(rank);
      Integer from = position.get(ranked.docid());
      if (from == null) {
        throw new IllegalStateException("the service returned an unknown docid " + ranked.docid());
      }
      copy(docs, from, out, rank, ranked.score());
      floor = Math.min(floor, ranked.score());
    }
    double tailMax = Double.NEGATIVE_INFINITY;
    for (int i = head; i < total; i++) {
      tailMax = Math.max(tailMax, docs.scores[i]);
    }
    double shift = Math.min(0.0, floor - tailMax - 1.0);
    for (int i = head; i < total; i++) {
      copy(docs, i, out, i, docs.scores[i] + shift);
    }
    return out;
  }

  /** The service's model name once a request has been answered (it becomes the run tag). */
  public String model() {
    return model;
  }

  @Override
  public String tag() {
    return "reasonrank(" + model + ", depth=" + depth + ")";
  }

  private static String docid(ScoredDocs docs, int i) {
    if (docs.docids != null && docs.docids[i] != null) {
      return docs.docids[i];
    }
    return docs.lucene_documents[i].get("id");
  }

  private static void copy(ScoredDocs from, int i, ScoredDocs to, int j, double score) {
    to.docids[j] = docid(from, i);
    to.lucene_docids[j] = from.lucene_docids[i];
    to.lucene_documents[j] = from.lucene_documents[i];
    to.scores[j] = (float) score;
  }
}
