namespace Cwa.Core.Engine;

/// <summary>
/// Stores the valid mr x nr corner of a full micro-tile computed into a scratch buffer: edge tiles run the same
/// register kernel as full ones, so the k loop never branches on matrix edges.
/// </summary>
internal static unsafe class EdgeTile
{
    public static void Store(float* tile, int tileStride, float* c, int ldc, int mr, int nr, float alpha, float beta)
    {
        for (int r = 0; r < mr; r++)
            for (int j = 0; j < nr; j++)
            {
                float v = alpha * tile[r * tileStride + j];
                c[r * ldc + j] = beta == 0f ? v : v + beta * c[r * ldc + j];
            }
    }
}
