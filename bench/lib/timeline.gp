# Chart of a floodgate-crowd sale (bench/compare): units held and sold, and hold latency, over
# the seconds since the opening. Reads the crowd's --timeline file.
# Usage: gnuplot -e "in='timeline.txt'; out='chart.png'; title='...'" bench/lib/timeline.gp
set terminal pngcairo size 1100,700 font "sans,10"
set output out
set multiplot layout 2,1 title title
set grid
set key top left
set xlabel "seconds since the opening"
set ylabel "units"
set format y "%.1s%c"
plot in using 1:2 with lines lw 2 title "units held", \
     in using 1:3 with lines lw 2 title "units sold (paid orders)"
set ylabel "holds/s"
set y2label "hold latency (ms)"
set y2tics
set y2range [0:*]
set yrange [0:*]
set ytics nomirror
set format y "%.1s%c"
set format y2 "%g"
set key top right
plot in using 1:4 with fsteps lw 1 title "holds/s (interval)", \
     in using 1:5 axes x1y2 with lines lw 2 title "p50 latency", \
     in using 1:6 axes x1y2 with lines lw 2 title "p99 latency"
unset multiplot
