# The entries of one settlement run ($w: its window, $d: its day, $off: the zone's UTC
# offset in seconds), and per partner the money legs on its settlement account and the
# fee on its earns and earn reversals, each at its earn's fee_per_point.
def bday: sub("\\.[0-9]+Z$"; "Z") | fromdateiso8601 + $off | strftime("%Y-%m-%d");
reduce (inputs | select(.type == "entry")) as $e ({fee_of: {}, p: {}};
  (if $e.kind == "earn" then .fee_of[$e.id] = ($e.metadata.pricing.fee_per_point // "0" | tonumber) else . end)
  | ($e.business_time | bday) as $bd
  | if ($e.kind | IN("fee", "settlement", "payment")) or $e.position > $w.cutoff or $bd > $d
       or ($e.position <= $w.previous_cutoff and $bd != $d) then .
    else
      (if $e.kind == "earn" then .fee_of[$e.id] elif $e.kind == "earn_reversal" then .fee_of[$e.reverses] else 0 end) as $f
      | reduce $e.postings[] as $p (.;
          ($p.account | capture("^partner:(?<p>[^:]+):(?<k>[a-z_]+)$")? // null) as $a
          | if $a == null then .
            elif $a.k == "settlement" then .p[$a.p].position += ($p.amount | tonumber)
            elif $a.k == "issued" and $f != 0 then .p[$a.p].fee += ($p.amount | tonumber) * $f
            else . end)
    end)
| .p | to_entries[] | "\(.key) position \(.value.position // 0 | . * 100 | round / 100) fee \(.value.fee // 0 | . * 100 | round / 100)"
