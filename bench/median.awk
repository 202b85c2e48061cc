# median(list): the median of the numbers in the space-separated list (the
# middle one, or the mean of the two middle ones). For bench/*.sh:
#   awk -f bench/median.awk -f TABLE.awk RUNS
function median(list,   a, n, i, j, x) {
  n = split(list, a, " ")
  for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > x + 0; j--) a[j + 1] = a[j]; a[j + 1] = x }
  return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
