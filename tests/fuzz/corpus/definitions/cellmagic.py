%%bash
echo hi
