// A sorted list in blocks: the results of a live query. One array would
// need O(n) work to take in a slice of a repository that is loading (heads
// arrive in the engine's order, not the query's): at a million items that
// is a merge of a million pointers per slice, hundreds of milliseconds on
// the main thread. Here an insertion costs a binary search over blocks, one
// within a block and a move of at most 2·BLOCK pointers, whatever the size.

/** Elements per block: between BLOCK/2 and 2·BLOCK (fewer only in a last
 * or lone block). */
const BLOCK = 256;

export class SortedList<T> {
  private blocks: T[][] = [];
  /** The last element of each block (binary search over blocks). */
  private lasts: T[] = [];
  private n = 0;

  constructor(private readonly cmp: (a: T, b: T) => number) {}

  get size(): number {
    return this.n;
  }

  /** The first block whose last element is ≥ `x` (or the last block). */
  private blockFor(x: T): number {
    const lasts = this.lasts;
    let lo = 0;
    let hi = lasts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.cmp(lasts[mid]!, x) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** First index in `block` whose element is ≥ `x` (`strict`: > `x`). */
  private indexIn(block: T[], x: T, strict: boolean): number {
    let lo = 0;
    let hi = block.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = this.cmp(block[mid]!, x);
      if (c < 0 || (strict && c === 0)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Inserts `x` after any equal elements. */
  insert(x: T): void {
    this.n++;
    if (this.blocks.length === 0) {
      this.blocks.push([x]);
      this.lasts.push(x);
      return;
    }
    const b = this.blockFor(x);
    const block = this.blocks[b]!;
    const i = this.indexIn(block, x, true);
    block.splice(i, 0, x);
    if (i === block.length - 1) this.lasts[b] = x;
    if (block.length > 2 * BLOCK) {
      const tail = block.splice(BLOCK);
      this.blocks.splice(b + 1, 0, tail);
      this.lasts.splice(b, 0, block[block.length - 1]!);
    }
  }

  /** Inserts elements already sorted among themselves: appended in blocks
   * when they all sort after the current last (or the list is empty), else
   * placed in one forward walk over the blocks (each element lands at or
   * after the previous one: no search from the start). */
  insertSorted(xs: readonly T[]): void {
    if (xs.length === 0) return;
    const lasts = this.lasts;
    const cmp = this.cmp;
    if (lasts.length && cmp(lasts[lasts.length - 1]!, xs[0]!) > 0) {
      let b = 0;
      let start = 0;
      for (const x of xs) {
        while (b < lasts.length - 1 && cmp(lasts[b]!, x) < 0) {
          b++;
          start = 0;
        }
        const block = this.blocks[b]!;
        let lo = start;
        let hi = block.length;
        while (lo < hi) {
          const mid = (lo + hi) >>> 1;
          if (cmp(block[mid]!, x) <= 0) lo = mid + 1;
          else hi = mid;
        }
        block.splice(lo, 0, x);
        this.n++;
        if (lo === block.length - 1) lasts[b] = x;
        start = lo + 1;
        if (block.length > 2 * BLOCK) {
          this.blocks.splice(b + 1, 0, block.splice(BLOCK));
          lasts.splice(b, 0, block[block.length - 1]!);
          if (start > BLOCK) {
            b++;
            start -= BLOCK;
          }
        }
      }
      return;
    }
    let from = 0;
    const lastBlock = this.blocks[this.blocks.length - 1];
    if (lastBlock && lastBlock.length < BLOCK) {
      // Fill the last block up first.
      from = Math.min(xs.length, BLOCK - lastBlock.length);
      for (let i = 0; i < from; i++) lastBlock.push(xs[i]!);
      lasts[lasts.length - 1] = lastBlock[lastBlock.length - 1]!;
    }
    for (let i = from; i < xs.length; i += BLOCK) {
      const block = xs.slice(i, i + BLOCK);
      this.blocks.push(block);
      lasts.push(block[block.length - 1]!);
    }
    this.n += xs.length;
  }

  /** Removes `x` (found by the order; if the order no longer places it
   * where it is, by a scan). False if it is not in the list. */
  remove(x: T): boolean {
    if (this.blocks.length === 0) return false;
    const b = this.blockFor(x);
    const block = this.blocks[b]!;
    const i = this.indexIn(block, x, false);
    if (block[i] === x) {
      this.removeAt(b, i);
      return true;
    }
    for (let bb = 0; bb < this.blocks.length; bb++) {
      const j = this.blocks[bb]!.indexOf(x);
      if (j >= 0) {
        this.removeAt(bb, j);
        return true;
      }
    }
    return false;
  }

  private removeAt(b: number, i: number): void {
    const block = this.blocks[b]!;
    block.splice(i, 1);
    this.n--;
    if (block.length === 0) {
      this.blocks.splice(b, 1);
      this.lasts.splice(b, 1);
      return;
    }
    if (i === block.length) this.lasts[b] = block[i - 1]!;
    // Keep blocks from thinning out: join a small block with its neighbour.
    if (block.length < BLOCK / 2 && this.blocks.length > 1) {
      const left = b > 0 ? b - 1 : b;
      const a = this.blocks[left]!;
      const c = this.blocks[left + 1]!;
      if (a.length + c.length <= 2 * BLOCK) {
        for (const y of c) a.push(y);
        this.blocks.splice(left + 1, 1);
        this.lasts.splice(left, 1);
        this.lasts[left] = a[a.length - 1]!;
      }
    }
  }

  /** The first `k` elements. */
  first(k: number): T[] {
    const out: T[] = [];
    for (const block of this.blocks) {
      for (const x of block) {
        if (out.length >= k) return out;
        out.push(x);
      }
    }
    return out;
  }

  toArray(): T[] {
    const out: T[] = [];
    for (const block of this.blocks) for (const x of block) out.push(x);
    return out;
  }
}
