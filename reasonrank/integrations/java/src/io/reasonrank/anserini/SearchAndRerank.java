package io.reasonrank.anserini;

import io.anserini.rerank.Reranker;
import io.anserini.search.ScoredDoc;
import io.anserini.search.SimpleSearcher;

import java.io.BufferedWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * Anserini BM25 over a Lucene index for a topics TSV, the top hits reranked by the reasonrank service, a TREC run.
 *
 * <pre>
 * java -cp reasonrank-anserini.jar:anserini-fatjar.jar io.reasonrank.anserini.SearchAndRerank \
 *   --index INDEX --topics topics.tsv --output run.txt [--hits 100] [--rerank-depth 100] \
 *   [--url http://127.0.0.1:8000] [--k1 0.9] [--b 0.4] [--timeout 600]
 * </pre>
 *
 * The reranker runs inside Anserini's own cascade: {@link RerankingSearcher} is a {@link SimpleSearcher} whose
 * cascade ends with a {@link ServiceReranker}, after Anserini's score-tie adjustment.
 */
public final class SearchAndRerank {
  static final int USAGE_ERROR = 2;
  static final int SERVICE_ERROR = 1;

  /** A {@link SimpleSearcher} whose cascade (tie adjustment, then any rerankers added here) reranks every search. */
  public static final class RerankingSearcher extends SimpleSearcher {
    public RerankingSearcher(String index) throws IOException {
      super(index);
    }

    public RerankingSearcher add(Reranker<String> reranker) {
      cascade.add(reranker);
      return this;
    }
  }

  private SearchAndRerank() {}

  public static void main(String[] argv) {
    int code;
    try {
      code = run(argv);
    } catch (UsageError error) {
      System.err.println("error: " + error.getMessage());
      code = USAGE_ERROR;
    } catch (UncheckedIOException | IOException | IllegalStateException error) {
      Throwable cause = error instanceof UncheckedIOException ? error.getCause() : error;
      System.err.println("error: " + cause.getMessage());
      code = SERVICE_ERROR;
    }
    System.exit(code);
  }

  static int run(String[] argv) throws IOException {
    Map<String, String> args = parse(argv);
    Path index = Path.of(required(args, "--index"));
    Path topics = Path.of(required(args, "--topics"));
    Path output = Path.of(required(args, "--output"));
    int hits = positive(args, "--hits", "100");
    int depth = positive(args, "--rerank-depth", "100");
    float k1 = number(args, "--k1", "0.9");
    float b = number(args, "--b", "0.4");
    URI url = URI.create(args.getOrDefault("--url", "http://127.0.0.1:8000"));
    Duration timeout = Duration.ofSeconds(positive(args, "--timeout", "600"));
    if (!Files.isDirectory(index)) {
      throw new UsageError("--index " + index + " is not a Lucene index folder: build one with Pyserini or Anserini");
    }
    Map<String, String> queries = readTopics(topics);

    RerankClient client = new RerankClient(url, timeout);
    String model;
    try {
      model = client.health();
    } catch (IOException error) {
      throw new IOException("cannot reach the reranking service at " + url + " (" + error.getMessage()
          + "): start it with python -m reasonrank.serve --reranker NAME", error);
    } catch (InterruptedException error) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted", error);
    }
    ServiceReranker<String> reranker = new ServiceReranker<>(client, depth);
    String tag = model.replace(' ', '_');

    Files.createDirectories(output.toAbsolutePath().getParent());
    Path temporary = Files.createTempFile(output.toAbsolutePath().getParent(), "." + output.getFileName(), ".tmp");
    try (RerankingSearcher searcher = new RerankingSearcher(index.toString())) {
      searcher.set_bm25(k1, b);
      searcher.add(reranker);
      try (BufferedWriter out = Files.newBufferedWriter(temporary, StandardCharsets.UTF_8)) {
        int done = 0;
        for (Map.Entry<String, String> topic : queries.entrySet()) {
          ScoredDoc[] ranked = searcher.search(topic.getValue(), hits);
          for (int i = 0; i < ranked.length; i++) {
            out.write(String.format(Locale.ROOT, "%s Q0 %s %d %.6f %s%n",
                topic.getKey(), ranked[i].docid, i + 1, ranked[i].score, tag));
          }
          done++;
          System.err.printf(Locale.ROOT, "\rreranked %d/%d queries", done, queries.size());
        }
        System.err.println();
      }
      Files.move(temporary, output, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    } finally {
      Files.deleteIfExists(temporary);
    }
    System.err.println("wrote " + output + " (" + queries.size() + " queries, model " + model + ")");
    return 0;
  }

  /** {@code qid<TAB>query} lines, blank lines skipped, in file order; read as {@code reasonrank.topics} reads them. */
  static Map<String, String> readTopics(Path topics) throws IOException {
    if (!Files.isRegularFile(topics)) {
      throw new UsageError("--topics " + topics + " does not exist: pass a TSV file of qid<TAB>query lines");
    }
    Map<String, String> queries = new LinkedHashMap<>();
    List<String> lines = Files.readAllLines(topics, StandardCharsets.UTF_8);
    for (int number = 1; number <= lines.size(); number++) {
      String line = lines.get(number - 1);
      if (line.isBlank()) {
        continue;
      }
      String[] fields = line.split("\t", 2);
      if (fields.length != 2 || fields[0].isBlank() || fields[1].isBlank()) {
        throw new UsageError(topics + ":" + number + ": expected qid<TAB>query");
      }
      if (queries.put(fields[0].strip(), fields[1]) != null) {
        throw new UsageError(topics + ":" + number + ": duplicate query id " + fields[0].strip());
      }
    }
    if (queries.isEmpty()) {
      throw new UsageError("--topics " + topics + " holds no topics");
    }
    return queries;
  }

  private static Map<String, String> parse(String[] argv) {
    List<String> known = new ArrayList<>(List.of(
        "--index", "--topics", "--output", "--hits", "--rerank-depth", "--url", "--k1", "--b", "--timeout"));
    Map<String, String> args = new LinkedHashMap<>();
    for (int i = 0; i < argv.length; i += 2) {
      if (!known.contains(argv[i]) || i + 1 >= argv.length) {
        throw new UsageError("unknown option or missing value at '" + argv[i] + "': options are " + known);
      }
      args.put(argv[i], argv[i + 1]);
    }
    return args;
  }

  private static String required(Map<String, String> args, String name) {
    String value = args.get(name);
    if (value == null) {
      throw new UsageError(name + " is required (see the class comment of SearchAndRerank for the usage)");
    }
    return value;
  }

  private static int positive(Map<String, String> args, String name, String fallback) {
    String text = args.getOrDefault(name, fallback);
    try {
      int value = Integer.parseInt(text);
      if (value >= 1) {
        return value;
      }
    } catch (NumberFormatException ignored) {
      // reported below
    }
    throw new UsageError(name + " must be a whole number of at least 1, got '" + text + "'");
  }

  private static float number(Map<String, String> args, String name, String fallback) {
    String text = args.getOrDefault(name, fallback);
    try {
      return Float.parseFloat(text);
    } catch (NumberFormatException error) {
      throw new UsageError(name + " must be a number, got '" + text + "'");
    }
  }

  /** Bad command-line input: one line, exit 2 (as reasonrank's Python commands do). */
  static final class UsageError extends RuntimeException {
    private static final long serialVersionUID = 1L;

    UsageError(String message) {
      super(message);
    }
  }
}
