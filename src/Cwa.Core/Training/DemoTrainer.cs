using Cwa.Core.Checkpoints;
using Cwa.Core.Data;
using Cwa.Core.Engine;
using Cwa.Core.Models;
using Cwa.Core.Pipeline;
using Cwa.Core.Tokenization;

namespace Cwa.Core.Training;

public sealed record DemoTrainingOptions(string OutDir, int Steps = 600, int BatchSize = 16, int SeqLen = 128, double LearningRate = 2e-3,
    int VocabSize = 1024, ulong Seed = 42, DType DType = DType.BF16, int Threads = 0, int EvalEvery = 20);

public sealed record DemoTrainingResult(double FirstLoss, double FinalTrainLoss, int BestStep, double ValidationPerplexity, double HeldOutPerplexity,
    double UniformPerplexity, long Parameters, double Seconds);

/// <summary>
/// Trains the built-in demo model: a byte-level BPE tokenizer and a small Llama on the built-in corpus's
/// calibration part (the evaluation part stays unseen), AdamW with warmup and cosine decay. The corpus is small
/// enough for a few million parameters to memorise it, so every tenth calibration paragraph is kept out of
/// training as a validation set and the weights with the best validation loss are kept (early stopping).
/// A trained model has structured weights, so its sensitivity maps and perturbation results mean something.
/// </summary>
public static class DemoTrainer
{
    public static DemoTrainingResult Train(DemoTrainingOptions o, IProgressSink progress)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var texts = BuiltInCorpus.Calibration;
        var tokenizer = ByteLevelBpeTrainer.Train(texts, o.VocabSize);
        var config = TestModelPresets.Config("demo", tokenizer.VocabSize) with
        {
            BosTokenId = tokenizer.BosId,
            EosTokenIds = [tokenizer.EosId],
            MaxPositionEmbeddings = 512,
        };
        string tmpTok = Path.Combine(Path.GetTempPath(), "cwa-demo-tok-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(tmpTok);
        ITextTokenizer tok;
        try
        {
            File.WriteAllText(Path.Combine(tmpTok, "tokenizer.json"), tokenizer.TokenizerJson);
            File.WriteAllText(Path.Combine(tmpTok, "tokenizer_config.json"), tokenizer.TokenizerConfigJson);
            tok = TokenizerLoader.Load(tmpTok, config);
        }
        finally { Directory.Delete(tmpTok, true); }

        List<int[]> Encode(IEnumerable<string> xs) => CalibrationSet.Tokenize(xs, tok, o.SeqLen).ToList();
        var train = Encode(texts.Where((_, i) => i % 10 != 9));
        var validation = CalibrationSet.MakeBatches(Encode(texts.Where((_, i) => i % 10 == 9)), 16, tok.PadId);
        var heldOut = CalibrationSet.MakeBatches(Encode(BuiltInCorpus.Evaluation), 16, tok.PadId);
        var weights = ModelWeights<float>.Random(config, o.Seed);
        var options = new EngineOptions(o.Threads);
        Gemm.MaxThreads = options.EffectiveThreads;
        var model = new LlamaModel<float>(weights, options);
        var grads = weights.ZerosLike();
        var opt = new AdamW(weights);
        var rng = new SplitMix64(o.Seed ^ 0xDE30);
        double first = double.NaN, ema = double.NaN, bestValidation = double.PositiveInfinity;
        int bestStep = -1;
        var best = weights.Clone();
        using (var phase = progress.Start("training", o.Steps))
        {
            for (int step = 0; step < o.Steps; step++)
            {
                var rows = Enumerable.Range(0, o.BatchSize).Select(_ => train[(int)rng.NextLong(train.Count)]).ToList();
                var batch = CalibrationSet.MakeBatches(rows, o.BatchSize, tok.PadId)[0];
                grads.Clear();
                double loss = model.ForwardBackward(batch, grads);
                if (!double.IsFinite(loss)) throw new CwaException($"training diverged at step {step} (loss {loss})");
                opt.Step(grads, LearningRate(step, o));
                if (step == 0) first = loss;
                ema = double.IsNaN(ema) ? loss : 0.95 * ema + 0.05 * loss;
                if ((step + 1) % o.EvalEvery == 0 || step == o.Steps - 1)
                {
                    double v = Perplexity(model, validation);
                    if (v < bestValidation)
                    {
                        (bestValidation, bestStep) = (v, step + 1);
                        for (int i = 0; i < weights.Count; i++) weights[i].AsSpan().CopyTo(best[i]);
                    }
                }
                phase.Describe($"step {step + 1}/{o.Steps} loss {ema:F3} best val ppl {bestValidation:F1} @ {bestStep}");
                phase.Advance();
            }
        }
        double heldOutPpl = Perplexity(new LlamaModel<float>(best, options), heldOut);
        TestModelGenerator.Write(o.OutDir, config, o.DType, (i, spec, dst) => best[i].AsSpan().CopyTo(dst), tokenizer.TokenizerJson, tokenizer.TokenizerConfigJson);
        return new DemoTrainingResult(first, ema, bestStep, bestValidation, heldOutPpl, tokenizer.VocabSize, weights.ParameterCount, sw.Elapsed.TotalSeconds);
    }

    private static double Perplexity(LlamaModel<float> model, IReadOnlyList<Batch> batches)
    {
        double sumNll = 0;
        long count = 0;
        foreach (var b in batches)
        {
            var e = model.Evaluate(b);
            sumNll += e.SumNll;
            count += e.Tokens;
        }
        return Math.Exp(sumNll / count);
    }

    /// <summary>Linear warmup over the first 5% of steps, then cosine decay to 10% of the peak.</summary>
    private static double LearningRate(int step, DemoTrainingOptions o)
    {
        int warmup = Math.Max(1, o.Steps / 20);
        if (step < warmup) return o.LearningRate * (step + 1) / warmup;
        double progress = (step - warmup) / (double)Math.Max(1, o.Steps - warmup);
        return o.LearningRate * (0.1 + 0.9 * 0.5 * (1 + Math.Cos(Math.PI * progress)));
    }
}
