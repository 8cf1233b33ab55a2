namespace Cwa.Core.Models;

/// <summary>
/// Ground truth for tests: one mlp.down_proj weight [Row, Col] of layer Layer that the model cannot live without, acting
/// as super weights do in real LLMs: it makes a massive activation on the BOS token alone, and the next layer's
/// attention turns BOS into a sink through which every token depends on that activation.
/// <list type="number">
/// <item>BOS's embedding carries +Magnitude on a marker channel that no other token has and no layer before the sink
/// writes. Layer Layer's MLP channel Col reads only the marker, so it fires on BOS alone, and the planted weight turns
/// it into +Magnitude on channel Row: the super activation.</item>
/// <item>In layer Layer + 1 two heads attend from every token to BOS (their keys read the marker, their queries a small
/// query channel every other token carries). Head A's value is BOS's normalised Row, head B's its marker; o_proj adds
/// them to Row with opposite signs. With the super activation both are sqrt(H/2) and cancel; without it head A reads 0
/// and head B sqrt(H), so every token gets -sqrt(2) * Magnitude on Row.</item>
/// <item>Later layers read Row as the trained (or random) weights do, except that keys, values and MLPs ignore Row and
/// the marker, so BOS's massive channels make it an empty sink there rather than a huge input.</item>
/// </list>
/// Zeroing the planted weight therefore leaves a massive offset in every token's residual stream from the sink on.
/// Layers before the sink see BOS as empty and the query channel as a small extra; the sink layer loses the heads of
/// two key/value groups. Applied tensor by tensor as a model is written.
/// </summary>
public sealed record PlantedSuperWeight(int Layer, int Row, int Col, int BosToken, float Magnitude = 1000f)
{
    /// <summary>How sharply the sink heads prefer BOS, in logits, for a token whose query channel reads 0.2 sqrt(H).</summary>
    private const double SinkLogit = 30;

    public static PlantedSuperWeight Parse(string text, ModelConfig config)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        if (parts.Length != 3 || !parts.All(p => int.TryParse(p, out _)))
            throw new InputException($"--plant-super-weight expects LAYER,ROW,COL (got '{text}')");
        var (l, r, c) = (int.Parse(parts[0]), int.Parse(parts[1]), int.Parse(parts[2]));
        if (l < 0 || l >= config.NumLayers - 1)
            throw new InputException($"--plant-super-weight: layer {l} is outside 0..{config.NumLayers - 2} (the next layer's attention carries the BOS activation)");
        if (r < 0 || r >= config.HiddenSize) throw new InputException($"--plant-super-weight: row {r} is outside the hidden size 0..{config.HiddenSize - 1}");
        if (c < 0 || c >= config.IntermediateSize) throw new InputException($"--plant-super-weight: col {c} is outside the intermediate size 0..{config.IntermediateSize - 1}");
        if (config.BosTokenId is not { } bos || bos < 0 || bos >= config.VocabSize)
            throw new InputException("--plant-super-weight needs a model with a bos_token_id inside its vocabulary (the super activation sits on BOS)");
        if (config.HiddenSize < 4 || config.HeadDim < 2)
            throw new InputException("--plant-super-weight needs a hidden size of at least 4 and a head dimension of at least 2 (it uses three hidden channels and a rotary pair)");
        if (config.TieWordEmbeddings) throw new InputException("--plant-super-weight needs untied embeddings (the planted embedding channels would change lm_head)");
        if (config.NumKvHeads < 2) throw new InputException("--plant-super-weight needs at least two key/value heads (the sink uses two)");
        return new PlantedSuperWeight(l, r, c, bos);
    }

    public string TensorName => $"model.layers.{Layer}.mlp.down_proj.weight";

    /// <summary>The hidden channel that marks BOS, and the one that gives every other token a sink query (never Row).</summary>
    private (int Marker, int Query) Channels(ModelConfig c) => ((Row + c.HiddenSize / 2) % c.HiddenSize, (Row + c.HiddenSize / 4) % c.HiddenSize);

    /// <summary>Rewrites the tensor's values in place where the plant needs it; other tensors are left alone.</summary>
    public void Apply(ParameterSpec spec, Span<float> v, ModelConfig config)
    {
        int h = config.HiddenSize, f = config.IntermediateSize, hd = config.HeadDim, sink = Layer + 1;
        var (marker, query) = Channels(config);
        // Heads A and B are the first query heads of key/value heads 0 and 1; the rest of those two groups are silenced.
        int group = config.NumHeads / config.NumKvHeads, headA = 0, headB = group, groupHeads = 2 * group;
        // The slowest-rotating dimension of a head (rotate-half RoPE pairs i with i + hd/2; i = hd/2 - 1 turns by
        // base^(-(hd-2)/hd) radians per position), so the sink's logit margin of 30 holds at every position.
        int slow = hd / 2 - 1;
        // A normalised hidden state has RMS 1: a channel holding all of it reads sqrt(H); BOS at the sink holds two
        // channels of equal size (marker and super activation), each reading sqrt(H / 2).
        double full = Math.Sqrt(h), half = Math.Sqrt(h / 2.0);
        bool early = spec.Block >= 0 && spec.Block <= sink;
        switch (spec.Role)
        {
            case ParameterRole.Embedding:
                for (int t = 0; t < spec.Rows; t++)
                {
                    var row = v.Slice(t * h, h);
                    row[Row] = 0;
                    row[marker] = t == BosToken ? Magnitude : 0;
                    row[query] = 0;
                    // Half the row's own norm: the sink query, small enough to leave the normalisation nearly as it was.
                    if (t != BosToken) row[query] = 0.5f * MathF.Sqrt(System.Numerics.Tensors.TensorPrimitives.SumOfSquares<float>(row));
                }
                break;
            case ParameterRole.OProj when early:
                ClearRow(v, spec.Cols, Row);
                ClearRow(v, spec.Cols, marker);
                ClearRow(v, spec.Cols, query);
                if (spec.Block == sink)
                {
                    for (int r = 0; r < spec.Rows; r++) v.Slice(r * spec.Cols, groupHeads * hd).Clear();
                    v[Row * spec.Cols + headA * hd + slow] = (float)(Magnitude / half);
                    v[Row * spec.Cols + headB * hd + slow] = (float)(-Magnitude / half);
                }
                break;
            case ParameterRole.DownProj when spec.Block >= 0 && spec.Block <= Layer:
                ClearRow(v, f, Row);
                ClearRow(v, f, marker);
                ClearRow(v, f, query);
                if (spec.Block != Layer) break;
                for (int i = 0; i < h; i++) v[i * f + Col] = 0;
                // BOS's MLP input reads sqrt(H) on the marker, so channel Col holds SiLU(sqrt(H)) * sqrt(H).
                v[Row * f + Col] = (float)(Magnitude / (full / (1 + Math.Exp(-full)) * full));
                break;
            case ParameterRole.PostAttentionNorm when spec.Block == Layer:
                v[marker] = 1;
                break;
            case ParameterRole.InputNorm when spec.Block == sink:
                v[Row] = v[marker] = v[query] = 1;
                break;
            case ParameterRole.QProj or ParameterRole.KProj or ParameterRole.VProj or ParameterRole.GateProj or ParameterRole.UpProj or ParameterRole.LmHead:
                ReadersIgnore(spec, v, marker, query, early);
                if (spec.Role is ParameterRole.GateProj or ParameterRole.UpProj && spec.Block == Layer)
                {
                    ClearRow(v, h, Col);
                    v[Col * h + marker] = 1;
                }
                else if (spec.Block == sink) Sink(spec, v, marker, query, group, hd, full, half);
                break;
            case ParameterRole.QBias when spec.Block == sink:
                v[..(groupHeads * hd)].Clear();
                break;
            case ParameterRole.KBias or ParameterRole.VBias when spec.Block == sink:
                v[..(2 * hd)].Clear();
                break;
        }
    }

    /// <summary>
    /// Who may read the planted channels: up to the sink nothing reads them; after it keys, values and MLPs ignore Row
    /// and the marker (BOS stays an empty sink), while queries and lm_head read Row as trained, which is where a
    /// missing super activation does its damage. The query channel is read by no one but the sink heads.
    /// </summary>
    private void ReadersIgnore(ParameterSpec spec, Span<float> v, int marker, int query, bool early)
    {
        ClearColumn(v, spec.Cols, query);
        ClearColumn(v, spec.Cols, marker);
        if (early || spec.Role is ParameterRole.KProj or ParameterRole.VProj or ParameterRole.GateProj or ParameterRole.UpProj) ClearColumn(v, spec.Cols, Row);
    }

    /// <summary>The two sink heads of layer Layer + 1 (the other heads of their key/value groups read nothing).</summary>
    private void Sink(ParameterSpec spec, Span<float> v, int marker, int query, int group, int hd, double full, double half)
    {
        int h = spec.Cols, slow = hd / 2 - 1;
        switch (spec.Role)
        {
            case ParameterRole.QProj:
                // Every other token's query channel reads at least about 0.2 sqrt(H); BOS's key is its marker, sqrt(H/2).
                v[..(2 * group * hd * h)].Clear();
                float scale = (float)(SinkLogit * Math.Sqrt(hd) / (0.2 * full * half));
                v[slow * h + query] = scale;
                v[(group * hd + slow) * h + query] = scale;
                break;
            case ParameterRole.KProj:
                v[..(2 * hd * h)].Clear();
                v[(0 * hd + slow) * h + marker] = 1;
                v[(1 * hd + slow) * h + marker] = 1;
                break;
            case ParameterRole.VProj:
                // Head A's value is BOS's normalised Row (the super activation), head B's its marker.
                v[..(2 * hd * h)].Clear();
                v[(0 * hd + slow) * h + Row] = 1;
                v[(1 * hd + slow) * h + marker] = 1;
                break;
        }
    }

    private static void ClearRow(Span<float> v, int cols, int row) => v.Slice(row * cols, cols).Clear();

    private static void ClearColumn(Span<float> v, int cols, int col)
    {
        for (int i = col; i < v.Length; i += cols) v[i] = 0;
    }
}
